//! End-to-end tests: the real server, the testkit mocks, and a real OpenAI client
//! (`async-openai`) or raw HTTP where the wire bytes matter.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod admin_flow;
mod chat;
mod common;
mod errors;
mod limits;
mod streaming;
