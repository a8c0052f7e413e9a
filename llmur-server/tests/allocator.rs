//! The `llmur` binary allocates with mimalloc in place of the C library's `malloc` (the
//! `override` feature, linked in by `main.rs`): dropping that link would fall back to
//! glibc's allocator without any error, so this checks that mimalloc starts with the process.

use std::process::Command;

#[test]
fn the_binary_allocates_with_mimalloc() {
    let out = Command::new(env!("CARGO_BIN_EXE_llmur"))
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .expect("the llmur binary runs");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mimalloc: process init"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("llmur"), "{stdout}");
}
