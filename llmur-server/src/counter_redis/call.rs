//! Script calls written straight into one command buffer.
//!
//! Owns: [`ScriptCall`]. redis-rs's `ScriptInvocation` keeps every argument in a vector of
//! its own and copies them all into a command when it is sent: with the reserve and settle
//! calls, about 50 allocations per request. A `ScriptCall` writes `EVALSHA sha numkeys
//! keys… args…` into one `Cmd` as it is built and, like `ScriptInvocation`, loads the
//! script and retries once when Redis answers `NOSCRIPT` (a new, restarted or flushed
//! server).

use bb8_redis::redis::aio::MultiplexedConnection;
use bb8_redis::redis::{
    Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs,
};

/// One `EVALSHA` of a script, built argument by argument.
pub(super) struct ScriptCall<'a> {
    script: &'a Script,
    cmd: Cmd,
}

impl<'a> ScriptCall<'a> {
    /// A call of `script` whose first `keys` arguments (the next ones written) are its
    /// `KEYS`; `args` and `bytes` are estimates of the arguments' number and total size
    /// (the buffer grows past them when they are low).
    pub(super) fn new(script: &'a Script, keys: usize, args: usize, bytes: usize) -> Self {
        let mut cmd = Cmd::with_capacity(args + 3, bytes + 64);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Self { script, cmd }
    }

    /// Appends an argument.
    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Sends the call, loading the script first if the server does not have it.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            result => result,
        }
    }
}
