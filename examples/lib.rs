//! Small helpers shared by the examples: serving a tower service on `127.0.0.1:0` and
//! building a one-deployment catalog that points at a mock upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use llmur_core::{
    Access, Connection, ConnectionId, Deployment, DeploymentId, KeyHasher, MemoryCatalog, OpenAi,
    ProjectId, Snapshot, Strategy, VirtualKey, VirtualKeyId, WeightedConnection,
};
use secrecy::SecretString;
use tokio::net::TcpListener;

/// The virtual key the example catalog accepts.
pub const VIRTUAL_KEY: &str = "sk-example-virtual-key";

/// A catalog with one deployment, `chat`, over one OpenAI connection to `upstream`.
pub fn example_catalog(upstream: &str) -> Arc<MemoryCatalog> {
    let hasher = KeyHasher::new(&SecretString::from("example application secret"));
    let key = VirtualKey {
        id: VirtualKeyId::new_random(),
        project_id: ProjectId::new_random(),
        alias: "example".into(),
        blocked: false,
        limits: None,
        project_limits: None,
    };
    let connection = Connection::new(
        ConnectionId::new_random(),
        Arc::new(OpenAi),
        upstream,
        "gpt-4o-mini",
        SecretString::from("sk-upstream-key"),
    );
    let deployment = Deployment::new(
        DeploymentId::new_random(),
        "chat",
        Access::Private,
        Strategy::RoundRobin,
        vec![WeightedConnection {
            connection: Arc::new(connection),
            weight: 1,
        }],
    );
    let mut snapshot = Snapshot::new();
    snapshot.link(key.id, deployment.id);
    snapshot.insert_key(hasher.hash(VIRTUAL_KEY), key);
    snapshot.insert_deployment(deployment);
    Arc::new(MemoryCatalog::new(hasher, snapshot))
}

/// Serves `service` on an ephemeral loopback port in a background task.
pub async fn serve<S, B>(service: S) -> std::io::Result<SocketAddr>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
