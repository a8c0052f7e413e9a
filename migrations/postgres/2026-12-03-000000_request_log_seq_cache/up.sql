-- Request logs are written by one connection per llmur instance (`COPY`, see
-- `llmur-server/src/db/postgres/log_copy.rs`). With a cache, that connection takes `seq`
-- values 1,000 at a time instead of locking and reading the sequence for every row (about
-- 0.17 µs of PostgreSQL's CPU a row; eighteenth round of `benches/HISTORY.md`). `seq`
-- still orders one instance's rows by insertion; between instances it was never more
-- than a tie-break on `started_at`. A restart leaves a gap, which nothing relies on.
ALTER TABLE request_logs ALTER COLUMN seq SET CACHE 1000;
