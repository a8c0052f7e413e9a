//! The load generator: raw hyper HTTP/1.1 keep-alive connections (`TCP_NODELAY`), opened
//! before a run starts.
//!
//! - [`closed_loop`]: a fixed number of connections, each sending its next request as soon
//!   as the previous answer is read → throughput.
//! - [`open_loop`]: requests scheduled at a fixed arrival rate on a pool of connections.
//!   Request `i` is due at `start + i / rate`; its latency counts from the moment it was due
//!   whenever no connection was free then (so a slow server cannot hide its queueing:
//!   no coordinated omission), and from the actual send when the generator was merely
//!   waiting for its own timer.
//! - [`hold_streams`]: many streaming requests kept open at once.
//!
//! Owns: client connections and timing. Must not touch: the processes under test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Result;
use crate::llmur_config::BENCH_KEY;
use crate::payload::BodyGen;

/// The path every benchmark request goes to.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// Numbers every body; shared by all runs so no two bodies of a benchmark are alike.
static NEXT_BODY: AtomicU64 = AtomicU64::new(1);

type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection.
pub async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn connect_all(addr: SocketAddr, n: usize) -> Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        senders.push(connect(addr).await?);
    }
    Ok(senders)
}

fn chat_request(body: Bytes) -> Result<Request<Full<Bytes>>> {
    Ok(Request::post(CHAT_PATH)
        .header(header::HOST, "127.0.0.1")
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(header::AUTHORIZATION, format!("Bearer {BENCH_KEY}"))
        .body(Full::new(body))?)
}

/// One request and its answer, read to the end.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// The answer's status.
    pub status: StatusCode,
    /// When the first body byte arrived.
    pub first_byte: Option<Instant>,
    /// When the last body byte arrived.
    pub done: Instant,
    /// Body bytes read.
    pub bytes: u64,
}

/// Sends the next body of `generator` on `sender` and reads the whole answer.
pub async fn exchange(sender: &mut Sender, generator: &BodyGen) -> Result<Exchange> {
    let body = generator.body(NEXT_BODY.fetch_add(1, Ordering::Relaxed));
    sender.ready().await?;
    let response = sender.send_request(chat_request(body)?).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if first_byte.is_none() && !data.is_empty() {
                first_byte = Some(Instant::now());
            }
            bytes += data.len() as u64;
        }
    }
    Ok(Exchange {
        status,
        first_byte,
        done: Instant::now(),
        bytes,
    })
}

/// What a closed-loop run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Closed {
    /// Successful (2xx) answers.
    pub completed: u64,
    /// Failed requests and non-2xx answers.
    pub errors: u64,
    /// From the start until the last worker finished.
    pub elapsed: Duration,
}

impl Closed {
    /// Successful answers per second.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` connections each sending back to back for `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    generator: &BodyGen,
    concurrency: usize,
    duration: Duration,
) -> Result<Closed> {
    let senders = connect_all(addr, concurrency).await?;
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for mut sender in senders {
        let generator = generator.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < end {
                match exchange(&mut sender, &generator).await {
                    Ok(x) if x.status.is_success() => ok += 1,
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        match connect(addr).await {
                            Ok(s) => sender = s,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            (ok, failed)
        }));
    }
    let mut result = Closed::default();
    for task in tasks {
        let (ok, failed) = task.await?;
        result.completed += ok;
        result.errors += failed;
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

/// What an open-loop run measured.
#[derive(Debug, Clone, Default)]
pub struct Open {
    /// Latency of every successful request, microseconds.
    pub latency_us: Vec<u64>,
    /// Time to the first body byte of every successful request, microseconds.
    pub ttfb_us: Vec<u64>,
    /// Failed requests and non-2xx answers.
    pub errors: u64,
    /// Requests that found no free connection when due (more than 1 ms late).
    pub late: u64,
    /// Body bytes read, over all requests.
    pub bytes: u64,
}

/// Requests at `rate` per second for `duration`, on `connections` connections.
pub async fn open_loop(
    addr: SocketAddr,
    generator: &BodyGen,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Result<Open> {
    let senders = connect_all(addr, connections).await?;
    let slots = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let end = start + duration;
    let interval = 1.0 / rate.max(1e-3);
    let mut tasks = Vec::with_capacity(connections);
    for mut sender in senders {
        let generator = generator.clone();
        let slots = Arc::clone(&slots);
        tasks.push(tokio::spawn(async move {
            let mut out = Open::default();
            loop {
                let i = slots.fetch_add(1, Ordering::Relaxed);
                let due = start + Duration::from_secs_f64(i as f64 * interval);
                if due >= end {
                    break;
                }
                let now = Instant::now();
                let base = if now < due {
                    tokio::time::sleep_until(due).await;
                    Instant::now()
                } else {
                    if now - due > Duration::from_millis(1) {
                        out.late += 1;
                    }
                    due
                };
                match exchange(&mut sender, &generator).await {
                    Ok(x) if x.status.is_success() => {
                        out.latency_us.push(micros(x.done - base));
                        out.ttfb_us
                            .push(micros(x.first_byte.unwrap_or(x.done) - base));
                        out.bytes += x.bytes;
                    }
                    Ok(_) => out.errors += 1,
                    Err(_) => {
                        out.errors += 1;
                        if let Ok(s) = connect(addr).await {
                            sender = s;
                        }
                    }
                }
            }
            out
        }));
    }
    let mut result = Open::default();
    for task in tasks {
        let part = task.await?;
        result.latency_us.extend(part.latency_us);
        result.ttfb_us.extend(part.ttfb_us);
        result.errors += part.errors;
        result.late += part.late;
        result.bytes += part.bytes;
    }
    Ok(result)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Streams held open by [`hold_streams`]; dropping it (or [`Held::release`]) ends them.
#[derive(Debug)]
pub struct Held {
    /// Streams that delivered their first byte and are open.
    pub open: usize,
    release: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Held {
    /// Closes every stream (the client hangs up) and waits for the tasks to end.
    pub async fn release(self) {
        let _ = self.release.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens `n` streaming requests, each on its own connection, and keeps reading them;
/// returns once all delivered their first byte or `timeout` passed.
pub async fn hold_streams(
    addr: SocketAddr,
    generator: &BodyGen,
    n: usize,
    timeout: Duration,
) -> Result<Held> {
    let opened = Arc::new(AtomicUsize::new(0));
    let (release, watcher) = watch::channel(false);
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let generator = generator.clone();
        let opened = Arc::clone(&opened);
        let mut watcher = watcher.clone();
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            // At most 64 streams are being opened at once; a permit is given back as soon
            // as its stream delivered its first byte.
            let Ok(permit) = gate.acquire_owned().await else {
                return;
            };
            let mut permit = Some(permit);
            let Ok(mut sender) = connect(addr).await else {
                return;
            };
            let body = generator.body(NEXT_BODY.fetch_add(1, Ordering::Relaxed));
            let Ok(request) = chat_request(body) else {
                return;
            };
            let Ok(response) = sender.send_request(request).await else {
                return;
            };
            let mut body = response.into_body();
            let mut counted = false;
            loop {
                tokio::select! {
                    frame = body.frame() => match frame {
                        Some(Ok(_)) if !counted => {
                            counted = true;
                            permit.take();
                            opened.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = watcher.changed() => break,
                }
            }
        }));
    }
    let deadline = Instant::now() + timeout;
    while opened.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Held {
        open: opened.load(Ordering::SeqCst),
        release,
        tasks,
    })
}

/// `GET path` with the benchmark key on a fresh connection; whether it answered 2xx.
pub async fn get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, connection)) = http1::handshake(TokioIo::new(stream)).await else {
        return false;
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let Ok(request) = Request::get(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::AUTHORIZATION, format!("Bearer {BENCH_KEY}"))
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}
