//! Mock OpenAI and Azure OpenAI HTTP servers for testing llmur, plus recorded fixtures.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use llmur_testkit::{Flavor, MockServer, Script};
//!
//! let mock = MockServer::start(Flavor::OpenAi).await?;
//! mock.set_script(Script::new().chunks(3).cadence(Duration::from_millis(5)));
//! mock.push_script(Script::new().error(429, serde_json::json!({"error": {"message": "slow down"}})).retry_after(1));
//! // point a client at mock.base_url() ...
//! assert_eq!(mock.request_count(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! The mock speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c). Behaviour is scripted
//! per request with [`Script`]; there are no magic model names.
#![warn(missing_docs)]

mod azure;
pub mod conformance;
pub mod fixtures;
mod handler;
mod openai;
mod precise;
mod record;
mod script;
mod server;
mod sse;

pub use script::{Latency, Script, Split};
pub use server::{Flavor, MockServer, RecordedRequest};
