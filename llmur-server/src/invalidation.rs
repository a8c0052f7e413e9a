//! Telling other instances that the catalog changed, through Redis pub/sub.
//!
//! Owns: [`RedisInvalidation`]. After an admin write this instance publishes on
//! [`CHANNEL`]; every instance subscribed pokes its [`CatalogSync`], which re-reads the
//! store's change counter and refreshes. Polling the counter stays on as the safety net, so
//! a lost message (or Redis being down) only delays a change to the polling interval.
//! Redis calls have short timeouts; a dead Redis never blocks an admin request.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::catalog_sync::CatalogSync;

/// The pub/sub channel.
pub const CHANNEL: &str = "llmur:catalog";
const TIMEOUT: Duration = Duration::from_millis(500);

/// Publishes and listens for catalog changes.
pub struct RedisInvalidation {
    client: redis::Client,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisInvalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisInvalidation")
    }
}

impl RedisInvalidation {
    /// A client for `url` (no connection is made yet).
    pub fn new(url: &SecretString) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url.expose_secret())?,
            publisher: Mutex::new(None),
        })
    }

    /// Tells the other instances; failures are logged, never returned.
    pub async fn publish(&self, version: i64) {
        let result = tokio::time::timeout(TIMEOUT, async {
            let mut guard = self.publisher.lock().await;
            if guard.is_none() {
                *guard = Some(self.client.get_multiplexed_async_connection().await?);
            }
            let Some(conn) = guard.as_mut() else {
                return Ok(());
            };
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(version)
                .query_async(conn)
                .await;
            if sent.is_err() {
                *guard = None;
            }
            sent.map(|_| ())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "catalog change not published to Redis; other instances poll")
            }
            Err(_) => tracing::warn!(
                "publishing a catalog change to Redis timed out; other instances poll"
            ),
        }
    }

    /// Subscribes and pokes `sync` on every message; reconnects forever with backoff.
    pub async fn listen(self: Arc<Self>, sync: Arc<CatalogSync>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match tokio::time::timeout(TIMEOUT * 4, self.client.get_async_pubsub()).await {
                Ok(Ok(mut pubsub)) => match pubsub.subscribe(CHANNEL).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        tracing::debug!("listening for catalog changes on Redis");
                        // Whatever happened while we were away.
                        sync.poke();
                        let mut messages = pubsub.into_on_message();
                        while messages.next().await.is_some() {
                            sync.poke();
                        }
                        tracing::warn!("Redis subscription ended; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to catalog changes"),
                },
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot connect to Redis for catalog changes")
                }
                Err(_) => tracing::warn!("connecting to Redis for catalog changes timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
