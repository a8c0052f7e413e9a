//! llmur's upstream client over real TLS: an `https://` upstream whose certificate chains
//! to a CA the system trusts is reached, over HTTP/2 when it offers it and HTTP/1.1 when
//! not, streams included; one whose certificate does not is refused with a 502.
//!
//! The upstream is the testkit's mock behind a TLS terminator of this test's own
//! (tokio-rustls, the certificates in `tests/fixtures/tls`, valid until 2125). The llmur
//! process trusts the test CA through `SSL_CERT_FILE`, which the platform verifier reads
//! on Linux in place of the system's store.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod process_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llmur_testkit::{Flavor, MockServer};
use process_support::spawn_llmur;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-llmur-tls-test-0123456789";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A TLS front for `upstream` on a free port of 127.0.0.1, presenting `cert` and
/// offering `alpn`; records the protocol each connection negotiated.
struct Terminator {
    port: u16,
    negotiated: Arc<Mutex<Vec<String>>>,
}

impl Terminator {
    async fn start(cert: &str, key: &str, alpn: &[&str], upstream: String) -> Terminator {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture(cert))
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(fixture(key)).expect("private key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let negotiated = Arc::new(Mutex::new(Vec::new()));
        let seen = negotiated.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // A handshake the client gives up on (an untrusted certificate) ends here.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let protocol = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default();
                    seen.lock().expect("lock").push(protocol);
                    let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Terminator { port, negotiated }
    }

    fn negotiated(&self) -> Vec<String> {
        self.negotiated.lock().expect("lock").clone()
    }
}

async fn chat(http: &reqwest::Client, base: &str, model: &str, stream: bool) -> (u16, String) {
    let response = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .expect("llmur answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn https_upstreams_are_reached_over_verified_tls_with_http2_when_offered() {
    let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
    let plain = mock.base_url().trim_start_matches("http://").to_owned();
    let h2 = Terminator::start(
        "server.pem",
        "server.key",
        &["h2", "http/1.1"],
        plain.clone(),
    )
    .await;
    let h1 = Terminator::start("server.pem", "server.key", &["http/1.1"], plain.clone()).await;
    let rogue = Terminator::start("rogue.pem", "rogue.key", &["h2", "http/1.1"], plain).await;

    let config = std::env::temp_dir().join(format!(
        "llmur-upstream-tls-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    let connection = |name: &str, port: u16| {
        format!(
            "  - {{provider: openai/v1, name: {name}, api_endpoint: \"https://localhost:{port}\", model: gpt-4o-mini, api_key: sk-up}}\n"
        )
    };
    let yaml = format!(
        "connections:\n{}{}{}deployments:\n  - {{name: h2, connections: [h2]}}\n  - {{name: h1, connections: [h1]}}\n  - {{name: rogue, connections: [rogue]}}\nprojects: [{{name: tls}}]\nvirtual_keys:\n  - {{key: {KEY}, project: tls, deployments: [h2, h1, rogue]}}\n",
        connection("h2", h2.port),
        connection("h1", h1.port),
        connection("rogue", rogue.port),
    );
    std::fs::write(&config, yaml).expect("config written");
    let ca = fixture("ca.pem");
    let llmur = spawn_llmur(&[
        ("LLMUR_CONFIG", config.to_string_lossy().as_ref()),
        ("LLMUR_DATABASE_URL", "sqlite::memory:"),
        (
            "LLMUR_APPLICATION_SECRET",
            "upstream-tls-test-application-secret",
        ),
        ("SSL_CERT_FILE", ca.to_string_lossy().as_ref()),
        ("SSL_CERT_DIR", "/nonexistent"),
    ]);
    let http = reqwest::Client::new();

    for (model, terminator, protocol) in [("h2", &h2, "h2"), ("h1", &h1, "http/1.1")] {
        let (status, body) = chat(&http, &llmur.base, model, false).await;
        assert_eq!(status, 200, "{model}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["model"], model, "{body}");
        assert!(
            answer["choices"][0]["message"]["content"].is_string(),
            "{body}"
        );

        let (status, body) = chat(&http, &llmur.base, model, true).await;
        assert_eq!(status, 200, "{model} stream: {body}");
        assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
        assert!(body.matches("data: {").count() > 1, "{body}");

        let negotiated = terminator.negotiated();
        assert!(!negotiated.is_empty(), "{model}: no TLS connection");
        assert!(
            negotiated.iter().all(|p| p == protocol),
            "{model}: negotiated {negotiated:?}"
        );
    }

    let (status, body) = chat(&http, &llmur.base, "rogue", false).await;
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(error["error"]["code"], "upstream_unreachable", "{body}");
    assert!(
        rogue.negotiated().is_empty(),
        "no request crossed an untrusted handshake"
    );
    assert_eq!(mock.request_count(), 4, "two calls each through h2 and h1");
    let _ = std::fs::remove_file(&config);
}
