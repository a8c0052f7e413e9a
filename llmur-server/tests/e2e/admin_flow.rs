//! Through the admin API alone: a user, a session, a project, a connection to the mock, a
//! deployment, a key and the links — then a chat through `/v1` with that key. On SQLite and
//! on PostgreSQL.

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use llmur_server::Config;
use llmur_server::db::testing::{fresh_postgres_database, fresh_sqlite_url};
use llmur_testkit::{Flavor, MockServer};
use serde_json::{Value, json};

const MASTER: &str = "master-key-for-e2e-tests";

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: (&str, &str),
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(auth.0, auth.1);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn post(&self, path: &str, auth: (&str, &str), body: Value) -> Value {
        let (status, body) = self
            .call(reqwest::Method::POST, path, auth, Some(body))
            .await;
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }
}

async fn run_flow(database_url: &str) {
    let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
    mock.require_api_key("sk-upstream-from-admin-api");
    let config = Config::from_yaml(&format!(
        "host: 127.0.0.1\nport: 0\napplication_secret: e2e-admin-flow-secret-0123456789\nmaster_keys: [{MASTER}]\ndatabase_url: \"{database_url}\"\n"
    ))
    .expect("config");
    let server = llmur_server::start(config, std::future::pending())
        .await
        .expect("server starts");
    let admin = Admin {
        http: reqwest::Client::new(),
        base: server.base_url(),
    };
    let master = ("X-LLMur-Key", MASTER);

    let user = admin
        .post(
            "/admin/user",
            master,
            json!({"email": "Ada@Example.com", "password": "correct horse battery", "role": "admin"}),
        )
        .await;
    assert_eq!(user["name"], "Ada");
    let session = admin
        .post(
            "/admin/session-token",
            master,
            json!({"email": "ada@example.com", "password": "correct horse battery"}),
        )
        .await;
    let token = session["token"].as_str().expect("token").to_owned();
    let me = ("X-LLMur-Session", token.as_str());

    let project = admin
        .post("/admin/project", me, json!({"name": "research"}))
        .await;
    let connection = admin
        .post(
            "/admin/connection",
            me,
            json!({"provider": "openai/v1", "model": "gpt-4o-mini-2024-07-18", "api_endpoint": mock.base_url(), "api_key": "sk-upstream-from-admin-api"}),
        )
        .await;
    assert!(
        !connection
            .to_string()
            .contains("sk-upstream-from-admin-api")
    );
    let deployment = admin
        .post("/admin/deployment", me, json!({"name": "chat"}))
        .await;
    admin
        .post(
            "/admin/connection-deployment",
            me,
            json!({"connection_id": connection["id"], "deployment_id": deployment["id"]}),
        )
        .await;
    let key = admin
        .post(
            "/admin/virtual-key",
            me,
            json!({"project_id": project["id"]}),
        )
        .await;
    let secret = key["key"].as_str().expect("full key once").to_owned();
    admin
        .post(
            "/admin/virtual-key-deployment",
            me,
            json!({"virtual_key_id": key["id"], "deployment_id": deployment["id"]}),
        )
        .await;

    let client = async_openai::Client::with_config(
        async_openai::config::OpenAIConfig::new()
            .with_api_base(format!("{}/v1", server.base_url()))
            .with_api_key(&secret),
    );
    let request = CreateChatCompletionRequestArgs::default()
        .model("chat")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hello")
            .build()
            .expect("message")
            .into()])
        .build()
        .expect("request");
    let answer = client
        .chat()
        .create(request)
        .await
        .expect("chat through the admin-made key");
    assert_eq!(answer.model, "chat");
    assert_eq!(mock.requests()[0].json()["model"], "gpt-4o-mini-2024-07-18");

    // Limits set through the API apply at once; /admin/graph shows the live usage.
    let key_id = key["id"].as_str().expect("id").to_owned();
    let (status, _) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/virtual-key/{key_id}"),
            me,
            Some(json!({"request_limits": {"requests_per_day": 2}, "token_limits": {"tokens_per_month": 100000}})),
        )
        .await;
    assert_eq!(status, 200);
    mock.set_script(llmur_testkit::Script::new().usage(9, 3));
    let chat = |secret: String| {
        let http = admin.http.clone();
        let url = format!("{}/v1/chat/completions", server.base_url());
        async move {
            http.post(url)
                .bearer_auth(secret)
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send")
        }
    };
    for remaining in ["1", "0"] {
        let response = chat(secret.clone()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            remaining
        );
    }
    let refused = chat(secret.clone()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let graph_path = format!("/admin/graph/{key_id}/chat");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, graph) = admin
            .call(reqwest::Method::GET, &graph_path, me, None)
            .await;
        assert_eq!(status, 200);
        let usage = &graph["virtual_key"]["usage"];
        assert_eq!(usage["requests"]["day"], 2, "{graph}");
        if usage["tokens"]["month"] == 24 {
            assert_eq!(
                usage["requests"]["minute"], 0,
                "unlimited buckets are not counted"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{graph}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Blocking the key takes effect at once on this instance.
    let (status, _) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/virtual-key/{}", key["id"].as_str().expect("id")),
            me,
            Some(json!({"blocked": true})),
        )
        .await;
    assert_eq!(status, 200);
    let response = admin
        .http
        .get(format!("{}/v1/models", server.base_url()))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);

    // The request log reached the database.
    let logs = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let logs = server
                .store()
                .list_request_logs(None, 10)
                .await
                .expect("logs");
            if !logs.is_empty() {
                return logs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("request log persisted");
    assert_eq!(logs[0].deployment, "chat");
    server.shutdown().await;
}

#[tokio::test]
async fn admin_api_to_completion_on_sqlite() {
    let (url, _guard) = fresh_sqlite_url();
    run_flow(&url).await;
}

#[tokio::test]
async fn admin_api_to_completion_on_postgres() {
    let (url, guard) = fresh_postgres_database()
        .await
        .expect("PostgreSQL reachable");
    run_flow(&url).await;
    drop(guard);
}
