//! The shared [`UsageCounter`] in Redis: one atomic Lua script per reserve, exact across
//! every llmur instance that points at the same Redis.
//!
//! Owns: [`RedisCounter`], its options ([`RedisCounterOptions`]), the key layout, the
//! script calls and the Lua scripts (`counter_redis/reserve.lua`, `cancel.lua`,
//! `settle.lua`, with the window helpers of `windows.lua`).
//! Must not touch: the counter contract and its types (`llmur_core::counter`), timeouts
//! and fallback (`FailoverCounter` wraps this counter), configuration parsing.
//!
//! # Keys
//!
//! One hash per window, `{prefix}:{window}:{window_start}` (e.g.
//! `llmur:rl:day:1732492800000`), with a field per entity, `{level}:{id}` (e.g.
//! `virtual_key:0b6f…`), holding the entity's usage in that window: its requests, tokens
//! and cost (micro-USD) as three little-endian doubles, 24 bytes
//! ([`RedisCounter::unpack_count`] reads one). Each hash expires `grace` after its window
//! ends, so a late settle still finds it and nothing lingers. A reservation on 24 buckets
//! (four entities, three metrics, two window kinds) is then two hash reads of four fields
//! and two hash writes inside the script, not 24 of each: in Redis's Lua every command,
//! every argument and every number parsed from or printed to text has a fixed cost, and
//! this layout cuts the script's instructions per call by more than a third. The script
//! creates every hash as a hash table (one field with a name longer than Redis's
//! `hash-max-listpack-value` does that), so finding a field costs the same however many
//! entities a busy tenancy has in use; a listpack, Redis's default for small hashes, is
//! searched field by field.
//!
//! A cancellable reserve ([`UsageCounter::reserve_tagged`]) records its ticket: a
//! time-ordered (v7) ticket as a field, its 16 bytes, of `{prefix}:tickets:{tenth}`, the
//! hash of its tenth of a second; any other ticket under `{prefix}:ticket:{uuid}`. A key
//! per request would make Redis expire thousands of keys a second under load, and its
//! expire cycle then stops the server for milliseconds at a time.
//!
//! # Round trips
//!
//! [`UsageCounter::reserve`] is one `EVALSHA` (after a `NOSCRIPT`, the script is loaded
//! once and the call retried), its arguments written straight into one command buffer
//! (`counter_redis/call.rs`) and its reply one string of packed doubles (the call's time
//! and every counted slot before it), which redis-rs parses far faster than an array of
//! integers, and a one-byte status per reservation; the caller replays the adds to learn
//! each reservation's counts. The pool does not ping connections on checkout. Reserves
//! that arrive while a call is in flight share the next call (`counter_redis/reserve_batch.rs`):
//! still one round trip each, but under load one script run, one `HMGET` and one `HSET`
//! per window hash serve many requests. The script reads the server's `TIME` (or the
//! caller's clock, see [`RedisCounter::with_caller_clock`]), derives each bucket's calendar
//! window exactly as [`Window::start`]/[`Window::end`] do, and adds each reservation's
//! amounts ask by ask (taking them back at the first that does not fit), reservation after
//! reservation, in queue order. Settles gathered over `settle_window` (5 ms) are one script call
//! (`counter_redis/settle_batch.rs`); the proxy's are queued there without a task or a wait
//! of their own (`settle_now`); [`UsageCounter::usage`] is one `HGET`.
//!
//! # Limits of exactness
//!
//! Lua numbers are doubles, so amounts and limits are compared exactly up to 2^53 - 1
//! (≈ 9·10^15 tokens or micro-USD). A larger amount is an error; a larger limit is treated
//! as 2^53 - 1, which no real window reaches.
//!
//! [`Window::start`]: llmur_core::window::Window::start
//! [`Window::end`]: llmur_core::window::Window::end

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8::{ErrorSink, ManageConnection, Pool, PooledConnection, RunError};
use bb8_redis::redis::aio::MultiplexedConnection;
use bb8_redis::redis::{self, RedisError, Script};
use llmur_core::counter::{
    Ask, Bucket, CounterError, Decision, Metric, Part, Refusal, Reservation, UsageCounter,
};
use rustc_hash::FxHashMap;
use uuid::Uuid;

/// The largest amount or limit the Lua scripts handle exactly (2^53 - 1).
const MAX_EXACT: u64 = (1 << 53) - 1;

/// The longest grace used (a year); longer ones are shortened to it.
const MAX_GRACE_MS: u64 = 366 * 24 * 3_600_000;

/// Options of a [`RedisCounter`]; [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCounterOptions {
    /// Prefix of every key (default `llmur:rl`).
    pub prefix: String,
    /// Longest wait for a pooled connection, including connecting (default 250 ms).
    pub connection_timeout: Duration,
    /// Most connections in each calling thread's pool (default 16; each is multiplexed,
    /// and a thread rarely needs more than one or two).
    pub pool_size: u32,
    /// How long a key outlives its window, so late settles still correct it
    /// (default 10 minutes, at most a year).
    pub grace: Duration,
    /// How long the first settle of a batch waits for others to join it (default 5 ms).
    /// Settles run after the answer, so this delays no request; a longer window sums
    /// more requests' corrections into one write per bucket.
    pub settle_window: Duration,
}

impl Default for RedisCounterOptions {
    fn default() -> Self {
        Self {
            prefix: RedisCounter::DEFAULT_PREFIX.to_owned(),
            connection_timeout: Duration::from_millis(250),
            pool_size: 16,
            grace: Duration::from_secs(600),
            settle_window: Duration::from_millis(5),
        }
    }
}

/// A [`UsageCounter`] in Redis, shared by every instance using the same server and prefix.
///
/// Cheap to share behind an `Arc`; all calls go through one bb8 pool. Construction never
/// contacts Redis, so a server that is down at start only makes calls fail with
/// [`CounterError`] (after at most the connection timeout) until it is back.
pub struct RedisCounter {
    redis: Arc<Redis>,
    keys: Arc<keys::Keys>,
    caller_clock: bool,
    reserves: reserve_batch::ReserveBatch,
    cancel_script: Script,
    settles: Arc<settle_batch::SettleBatch>,
}

mod call;
mod keys;
mod reserve_batch;
mod settle_batch;

/// A script with the window helpers (`windows.lua`) in front of it.
macro_rules! script_with_windows {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("counter_redis/windows.lua"),
            include_str!($file)
        ))
    };
}

impl RedisCounter {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "llmur:rl";

    /// A counter on the Redis at `url` (`redis://[USER:PASSWORD@]HOST:PORT[/DB]`) with
    /// keys under `prefix` and the default options otherwise.
    ///
    /// Fails only on an invalid URL or options, or outside a Tokio runtime; an unreachable
    /// server is not an error here.
    pub fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, CounterError> {
        Self::connect_with(
            url,
            RedisCounterOptions {
                prefix: prefix.into(),
                ..RedisCounterOptions::default()
            },
        )
    }

    /// A counter on the Redis at `url` with `options`; see [`RedisCounter::connect`].
    pub fn connect_with(url: &str, options: RedisCounterOptions) -> Result<Self, CounterError> {
        let target = redact_url(url);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CounterError(
                "the Redis counter must be created inside a Tokio runtime".to_owned(),
            ));
        }
        if options.connection_timeout.is_zero() || options.pool_size == 0 {
            return Err(CounterError(
                "the Redis counter needs a non-zero connection timeout and pool size".to_owned(),
            ));
        }
        if options.prefix.is_empty() {
            return Err(CounterError(
                "the Redis counter needs a non-empty key prefix".to_owned(),
            ));
        }
        let manager = RedisConnectionManager::new(url).map_err(|e| {
            CounterError(format!("invalid Redis URL for the counter ({target}): {e}"))
        })?;
        let last_connect_error = Arc::new(Mutex::new(None));
        let grace_ms = u64::try_from(options.grace.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_GRACE_MS);
        let redis = Arc::new(Redis {
            manager: Manager(manager),
            pool_size: options.pool_size,
            pools: Mutex::new(FxHashMap::default()),
            target,
            connection_timeout: options.connection_timeout,
            last_connect_error,
        });
        let keys = Arc::new(keys::Keys::new(options.prefix));
        Ok(Self {
            reserves: reserve_batch::ReserveBatch::new(reserve_batch::Sender {
                redis: Arc::clone(&redis),
                script: script_with_windows!("counter_redis/reserve.lua"),
                keys: Arc::clone(&keys),
                grace_ms,
            }),
            settles: settle_batch::SettleBatch::new(
                Arc::clone(&redis),
                Arc::clone(&keys),
                Script::new(include_str!("counter_redis/settle.lua")),
                options.settle_window,
            ),
            redis,
            keys,
            caller_clock: false,
            cancel_script: script_with_windows!("counter_redis/cancel.lua"),
        })
    }

    /// Uses the caller's `now_ms` for windows instead of the Redis server's clock (for
    /// tests with a fake clock). TTLs stay relative to real time either way.
    #[must_use]
    pub fn with_caller_clock(mut self) -> Self {
        self.caller_clock = true;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Where `bucket`'s usage in the window starting at `window_start` is kept: the
    /// window's hash and the field of the bucket's entity in it (see the module docs).
    /// [`RedisCounter::unpack_count`] reads the bucket's count from the field's value.
    pub fn location(&self, bucket: &Bucket, window_start: i64) -> (String, String) {
        (
            self.keys.hash(bucket.window, window_start),
            keys::format_field(bucket),
        )
    }

    /// `metric`'s count in the value of an entity's field (see
    /// [`RedisCounter::location`]): `None` unless the value is the counter's three packed
    /// counts.
    pub fn unpack_count(value: &[u8], metric: Metric) -> Option<u64> {
        keys::unpack_count(value, metric)
    }

    /// Where a cancellable reserve is recorded: a time-ordered (version 7) ticket in the
    /// hash of its tenth of a second, `({prefix}:tickets:{tenth}, its 16 bytes)`; any
    /// other ticket under a key of its own, `("", {prefix}:ticket:{uuid})` (see
    /// `reserve.lua`).
    fn ticket_location(&self, ticket: Uuid) -> (String, Vec<u8>) {
        let prefix = self.keys.prefix();
        match ticket.get_timestamp() {
            Some(at) if ticket.get_version() == Some(uuid::Version::SortRand) => {
                let (secs, nanos) = at.to_unix();
                let tenth = secs * 10 + u64::from(nanos / 100_000_000);
                (
                    format!("{prefix}:tickets:{tenth}"),
                    ticket.as_bytes().to_vec(),
                )
            }
            _ => (
                String::new(),
                format!("{prefix}:ticket:{ticket}").into_bytes(),
            ),
        }
    }

    /// One reserve, batched with any others queued meanwhile; `ticket` makes it
    /// cancellable.
    async fn run_reserve(
        &self,
        asks: &[Ask],
        now_ms: i64,
        ticket: Option<Uuid>,
    ) -> Result<Decision, CounterError> {
        if asks.is_empty() {
            return Ok(Decision::Admitted(Reservation::default()));
        }
        let now = self.caller_clock.then_some(now_ms);
        let ticket = ticket.map(|t| self.ticket_location(t));
        let reply = self.reserves.reserve(asks, now, ticket).await?;
        if let [2, ..] = reply.as_slice() {
            return Err(CounterError(
                "this reservation was cancelled before it ran".to_owned(),
            ));
        }
        decode_reserve(asks, &reply).ok_or_else(|| {
            CounterError(format!(
                "unexpected reply from the reserve script at {}: {reply:?}",
                self.redis.target
            ))
        })
    }
}

/// The connection pool and what its error messages need, shared by the counter and its
/// reserve and settle batches.
struct Redis {
    manager: Manager,
    /// Most connections of each thread's pool.
    pool_size: u32,
    /// One pool per thread that calls: a connection's I/O task runs on the runtime that
    /// opened it, so a thread-per-core server keeps each call on its own thread instead
    /// of waking another one twice per round trip.
    pools: Mutex<FxHashMap<ThreadId, Pool<Manager>>>,
    /// The URL with any password replaced, for `Debug` and messages.
    target: String,
    connection_timeout: Duration,
    last_connect_error: Arc<Mutex<Option<String>>>,
}

impl Redis {
    /// A pooled connection, waiting at most the connection timeout.
    async fn conn(&self) -> Result<PooledConnection<'static, Manager>, CounterError> {
        let conn = self.pool().get_owned().await.map_err(|e| match e {
            RunError::User(e) => CounterError(format!("Redis at {}: {e}", self.target)),
            RunError::TimedOut => {
                let last = self
                    .last_connect_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                CounterError(format!(
                    "no Redis connection to {} within {} ms{}",
                    self.target,
                    self.connection_timeout.as_millis(),
                    last.map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ))
            }
        })?;
        // A connection works again: forget the last connection error.
        let mut last = self
            .last_connect_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some() {
            *last = None;
        }
        Ok(conn)
    }

    /// This thread's pool (made on first use).
    fn pool(&self) -> Pool<Manager> {
        let thread = std::thread::current().id();
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools
            .entry(thread)
            .or_insert_with(|| {
                Pool::builder()
                    .max_size(self.pool_size)
                    .connection_timeout(self.connection_timeout)
                    // A checkout ping would double the round trips; broken connections
                    // are dropped when a call on them fails instead (see `Conn::broken`).
                    .test_on_check_out(false)
                    .error_sink(Box::new(LastError(Arc::clone(&self.last_connect_error))))
                    .build_unchecked(self.manager.clone())
            })
            .clone()
    }

    /// Connections open and idle, over every thread's pool.
    fn connections(&self) -> (u32, u32) {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.values().fold((0, 0), |(open, idle), pool| {
            let state = pool.state();
            (open + state.connections, idle + state.idle_connections)
        })
    }

    /// Maps a failed call to a [`CounterError`], marking the connection broken when the
    /// error means it cannot be used again.
    fn fail(&self, conn: &mut Conn, e: &RedisError) -> CounterError {
        conn.note_error(e);
        CounterError(format!("Redis at {}: {e}", self.target))
    }

    /// Runs `call` on a pooled connection (the settle and cancel calls; a reserve has a
    /// timeout of its own, see `reserve_batch.rs`).
    async fn run<T: redis::FromRedisValue>(
        &self,
        call: &call::ScriptCall<'_>,
    ) -> Result<T, CounterError> {
        let mut conn = self.conn().await?;
        match call.run(&mut conn.conn).await {
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.fail(&mut conn, &e)),
        }
    }
}

impl fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connections, idle_connections) = self.redis.connections();
        f.debug_struct("RedisCounter")
            .field("target", &self.redis.target)
            .field("prefix", &self.keys.prefix())
            .field("caller_clock", &self.caller_clock)
            .field("connection_timeout", &self.redis.connection_timeout)
            .field("connections", &connections)
            .field("idle_connections", &idle_connections)
            .finish()
    }
}

#[async_trait]
impl UsageCounter for RedisCounter {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        self.run_reserve(asks, now_ms, None).await
    }

    async fn reserve_tagged(
        &self,
        asks: &[Ask],
        now_ms: i64,
        ticket: Uuid,
    ) -> Result<Decision, CounterError> {
        self.run_reserve(asks, now_ms, Some(ticket)).await
    }

    async fn cancel(&self, asks: &[Ask], ticket: Uuid) -> Result<(), CounterError> {
        if asks.is_empty() {
            return Ok(());
        }
        // The reservation's own time is read from its ticket; its amounts go back per
        // entity window, as three packed doubles (see `cancel.lua`).
        let mut entities: Vec<(&Bucket, [u64; 3])> = Vec::with_capacity(asks.len());
        for ask in asks {
            let b = &ask.bucket;
            let at = match entities
                .iter()
                .position(|(e, _)| e.level == b.level && e.id == b.id && e.window == b.window)
            {
                Some(at) => at,
                None => {
                    entities.push((b, [0; 3]));
                    entities.len() - 1
                }
            };
            let amount = &mut entities[at].1[b.metric.index()];
            *amount = amount.saturating_add(ask.amount).min(MAX_EXACT);
        }
        let mut call = call::ScriptCall::new(
            &self.cancel_script,
            0,
            3 + 3 * entities.len(),
            128 + entities.len() * 100,
        );
        let (hash, field) = self.ticket_location(ticket);
        call.arg(hash).arg(field.as_slice()).arg(self.keys.prefix());
        {
            let mut fields = self.keys.lock();
            let mut packed = Vec::with_capacity(24);
            for (bucket, amounts) in &entities {
                packed.clear();
                for &amount in amounts {
                    keys::push_f64(&mut packed, amount as f64);
                }
                call.arg(fields.field(bucket))
                    .arg(bucket.window.as_str())
                    .arg(packed.as_slice());
            }
        }
        self.redis.run::<i64>(&call).await.map(|_| ())
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        self.settles.settle(settle_parts(reservation, actual)).await
    }

    /// Queues the correction into the open settle batch and returns at once: the proxy
    /// settles every request, and a task per request only to wait for the batch cost more
    /// than the batch. A failed write is logged by the batch.
    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        self.settles.queue(settle_parts(reservation, actual))
    }

    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        let (hash, field) = self.location(&bucket, bucket.window.start(now_ms));
        let mut conn = self.redis.conn().await?;
        let stored: Option<Vec<u8>> = match redis::cmd("HGET")
            .arg(&hash)
            .arg(&field)
            .query_async(&mut conn.conn)
            .await
        {
            Ok(stored) => stored,
            Err(e) => return Err(self.redis.fail(&mut conn, &e)),
        };
        match stored {
            None => Ok(0),
            Some(value) => Self::unpack_count(&value, bucket.metric).ok_or_else(|| {
                CounterError(format!(
                    "unexpected value in {hash} {field} at {}: {} bytes, not {}",
                    self.redis.target,
                    value.len(),
                    keys::PACKED_LEN
                ))
            }),
        }
    }
}

/// A settle's corrections: each changed part's bucket, window start, reserved and actual
/// amounts. A missing actual keeps the reservation; an unchanged amount needs no write.
fn settle_parts(reservation: &Reservation, actual: &[u64]) -> Vec<settle_batch::SettlePart> {
    reservation
        .parts
        .iter()
        .zip(actual)
        .filter(|(part, real)| **real != part.amount)
        .map(|(part, &real)| (part.bucket, part.window_start, part.amount, real))
        .collect()
}

/// Turns the reserve script's reply into a [`Decision`]; `None` if it is malformed. An
/// admitted reply carries each bucket's count; the windows follow from its `now` exactly
/// as the script computed them.
fn decode_reserve(asks: &[Ask], reply: &[i64]) -> Option<Decision> {
    match reply {
        [1, now_ms, used @ ..] if used.len() == asks.len() => {
            // Each window kind's start and end, worked out once (a request asks on up to
            // five kinds, 24 buckets).
            let mut windows: [Option<(i64, i64)>; llmur_core::window::Window::ALL.len()] =
                Default::default();
            let mut parts = Vec::with_capacity(asks.len());
            for (ask, &used) in asks.iter().zip(used) {
                let window = ask.bucket.window;
                let (window_start, resets_at) = *windows
                    .get_mut(window.index())?
                    .get_or_insert_with(|| (window.start(*now_ms), window.end(*now_ms)));
                parts.push(Part {
                    bucket: ask.bucket,
                    window_start,
                    resets_at,
                    amount: ask.amount,
                    limit: ask.limit,
                    used: u64::try_from(used).ok()?,
                });
            }
            Some(Decision::Admitted(Reservation {
                parts,
                fallback: false,
            }))
        }
        &[0, now_ms, index, used, resets_at] => {
            let ask = asks.get(usize::try_from(index).ok()?.checked_sub(1)?)?;
            Some(Decision::Refused(Refusal {
                bucket: ask.bucket,
                limit: ask.limit,
                used: u64::try_from(used).ok()?,
                amount: ask.amount,
                resets_at,
                now_ms,
            }))
        }
        _ => None,
    }
}

/// `url` without its user info (shown as `***`), query and fragment: what is left names
/// the server but carries no secret.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL we can take apart: show nothing of it rather than a secret.
        return "(unparsed Redis URL)".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// A pooled connection that remembers when a call showed it unusable.
struct Conn {
    conn: MultiplexedConnection,
    broken: bool,
}

impl Conn {
    /// Marks the connection broken when `e` means it cannot be used again.
    fn note_error(&mut self, e: &RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            self.broken = true;
        }
    }
}

/// bb8-redis's manager, with connections the pool drops once a call marks them broken
/// (checkouts are not pinged, so this is how a Redis restart is noticed).
#[derive(Debug, Clone)]
struct Manager(RedisConnectionManager);

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Conn, RedisError> {
        Ok(Conn {
            conn: self.0.connect().await?,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), RedisError> {
        self.0.is_valid(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// Keeps the pool's last connection error for the "no connection" message.
#[derive(Debug, Clone)]
struct LastError(Arc<Mutex<Option<String>>>);

impl ErrorSink<RedisError> for LastError {
    fn sink(&self, error: RedisError) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<RedisError>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("redis://default:s3cret@cache:6379/2"),
            "redis://***@cache:6379/2"
        );
        assert_eq!(
            redact_url("rediss://:p@ss@cache:6380"),
            "rediss://***@cache:6380"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://cache:6379/0?password=x#y"),
            "redis://cache:6379/0"
        );
        assert_eq!(redact_url("nonsense"), "(unparsed Redis URL)");
    }

    #[tokio::test]
    async fn debug_hides_the_password_and_empty_asks_need_no_redis() {
        // Port 9 (discard) on localhost: nothing listens, and nothing is contacted.
        let Ok(counter) = RedisCounter::connect("redis://user:hunter2@127.0.0.1:9", "t") else {
            unreachable!("a valid URL")
        };
        let debug = format!("{counter:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***@127.0.0.1:9"), "{debug}");
        let started = std::time::Instant::now();
        assert_eq!(
            counter.reserve(&[], 0).await.ok(),
            Some(Decision::Admitted(Reservation::default()))
        );
        assert!(counter.settle(&Reservation::default(), &[]).await.is_ok());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
