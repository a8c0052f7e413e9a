//! Shared set-up for the end-to-end tests: mock upstreams, a server configured against
//! them, and clients.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use llmur_server::{Config, RunningServer};
use llmur_testkit::{Flavor, MockServer};

pub const KEY: &str = "sk-llmur-e2e-key-0001";
pub const BLOCKED_KEY: &str = "sk-llmur-e2e-blocked";
pub const OTHER_KEY: &str = "sk-llmur-e2e-other-project";
pub const OPENAI_UPSTREAM_KEY: &str = "sk-upstream-openai-secret";
pub const AZURE_UPSTREAM_KEY: &str = "azure-upstream-secret";
pub const OPENAI_MODEL: &str = "gpt-4o-mini-2024-07-18";

pub struct Stack {
    pub server: RunningServer,
    pub openai: MockServer,
    pub azure: MockServer,
}

impl Stack {
    pub fn v1(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }

    pub fn client(&self, key: &str) -> Client<OpenAIConfig> {
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(self.v1())
                .with_api_key(key),
        )
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// A raw `POST /v1/chat/completions` with the test key.
    pub async fn post_chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.http()
            .post(format!("{}/chat/completions", self.v1()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("request reaches llmur")
    }
}

/// Starts both mocks and a server with the standard catalog, plus `extra` YAML lines
/// appended at the top level (e.g. `upstream_timeout_secs: 1`).
pub async fn stack(extra: &str) -> Stack {
    stack_with(extra, "").await
}

/// Like [`stack`], with `more_deployments` appended to the `deployments:` list.
pub async fn stack_with(extra: &str, more_deployments: &str) -> Stack {
    let openai = MockServer::start(Flavor::OpenAi)
        .await
        .expect("openai mock");
    openai.require_api_key(OPENAI_UPSTREAM_KEY);
    let azure = MockServer::start(Flavor::Azure).await.expect("azure mock");
    azure.require_api_key(AZURE_UPSTREAM_KEY);
    let yaml = format!(
        r#"
host: 127.0.0.1
port: 0
application_secret: e2e-secret-0123456789abcdef
database_url: "sqlite::memory:"
shutdown_grace_secs: 5
{extra}
connections:
  - provider: openai/v1
    name: oai
    api_endpoint: {openai}
    model: {OPENAI_MODEL}
    api_key: {OPENAI_UPSTREAM_KEY}
  - provider: azure/openai
    name: az-dated
    api_endpoint: {azure}
    deployment_name: my-gpt4o
    api_key: {AZURE_UPSTREAM_KEY}
    api_version: 2024-10-21
  - provider: azure/openai
    name: az-v1
    api_endpoint: {azure}
    deployment_name: my-gpt4o
    api_key: {AZURE_UPSTREAM_KEY}
  - provider: openai/v1
    name: replay
    api_endpoint: {openai}
    model: gpt-4o
    api_key: {OPENAI_UPSTREAM_KEY}
  - provider: openai/v1
    name: dead
    api_endpoint: http://127.0.0.1:9
    model: gpt-4o
    api_key: k
deployments:
  - {{name: gpt-4o-mini, connections: [oai]}}
  - {{name: azure-chat, connections: [az-dated]}}
  - {{name: azure-v1, connections: [az-v1]}}
  - {{name: gpt-4o-2024-08-06, connections: [replay]}}
  - {{name: unlinked, connections: [oai]}}
  - {{name: unreachable, connections: [dead]}}
  - {{name: failover, connections: [dead, oai]}}
{more_deployments}
projects: [{{name: team}}, {{name: other}}]
virtual_keys:
  - key: {KEY}
    project: team
    deployments: [gpt-4o-mini, azure-chat, azure-v1, gpt-4o-2024-08-06, unreachable, failover]
  - key: {BLOCKED_KEY}
    project: team
    blocked: true
    deployments: [gpt-4o-mini]
  - key: {OTHER_KEY}
    project: other
    deployments: [unlinked]
"#,
        openai = openai.base_url(),
        azure = azure.base_url(),
    );
    let mut config = Config::from_yaml(&yaml).expect("test config is valid");
    config.recent_request_logs = 10_000;
    let server = llmur_server::start(config, std::future::pending())
        .await
        .expect("server starts");
    Stack {
        server,
        openai,
        azure,
    }
}

/// No secret of the client or of llmur may appear anywhere in a forwarded request.
pub fn assert_no_virtual_key(request: &llmur_testkit::RecordedRequest) {
    for (name, value) in &request.headers {
        let v = value.to_str().unwrap_or_default();
        assert!(!v.contains(KEY), "virtual key forwarded in header {name}");
    }
    assert!(
        !String::from_utf8_lossy(&request.body).contains(KEY),
        "virtual key forwarded in the body"
    );
}

pub const WAIT: Duration = Duration::from_secs(5);
