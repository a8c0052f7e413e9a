#!/usr/bin/env bash
# Instructions per request in llmur, counted by callgrind (the same count however busy the
# machine is). Starts the mock upstream, then llmur under valgrind with one worker thread,
# sends WARM requests, switches instrumentation on, sends N sequential 200 B chat requests,
# switches it off and prints llmur's instructions per request.
#
#   benches/profile/callgrind.sh bare|pg|redis|full|nolease|floor [N] [WARM]
#
# full is llmur's default with PostgreSQL and Redis (leases on); nolease is full with
# `lease_requests: 0` (a Redis reservation per request); floor profiles the bench's
# `llmur-floor` instead of llmur (the same requests, to compare with).
# STREAM=1 sends streaming requests (the mock answers 20 content chunks, no pause).
# VALGRIND_OPTS="--cache-sim=yes" adds simulated cache misses to the counts.
# BIN_DIR takes every binary (mock, llmur, floor) from another target directory (another
# profile, to compare); LLMUR_BIN names another llmur binary to profile (an older build, to compare); LEASE_MS
# sets lease_ms (default 50; under valgrind a request takes milliseconds, so 5000 lets
# leases run out by count, as under load); BODY_BYTES the request body's size (default
# about 200).
# Needs a release build (`cargo build --release -p llmur-server -p llmur-testkit --bins`),
# valgrind and python3; pg/full/nolease need the PostgreSQL of LLMUR_TEST_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test, a throw-away schema llmur_prof) and
# redis/full/nolease the Redis of LLMUR_TEST_REDIS_URL (default redis://127.0.0.1:6379).
# The callgrind output stays in target/profile/callgrind.out.<profile> for
# callgrind_annotate.
set -euo pipefail
profile=${1:?profile: bare, pg, redis, full, nolease or floor}
n=${2:-2000}
warm=${3:-300}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN_DIR:-$root/target/release}
out=$root/target/profile
mkdir -p "$out"
pg=${LLMUR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
redis=${LLMUR_TEST_REDIS_URL:-redis://127.0.0.1:6379}
mock_port=39111
port=39201

limits='{requests: {per_minute: 1000000000, per_day: 100000000000}, tokens: {per_minute: 1000000000000, per_day: 100000000000000}, budget: {per_minute: 1000000000.0, per_day: 100000000000.0}}'
db="sqlite::memory:"; level='"off"'; extra=""
case $profile in
  bare|floor) ;;
  pg) db="$pg?options=-c%20search_path%3Dllmur_prof"; level=info ;;
  redis) extra=$(printf 'redis_url: "%s"\nrate_limits: {lease_ms: %s}' "$redis" "${LEASE_MS:-50}") ;;
  full) db="$pg?options=-c%20search_path%3Dllmur_prof"; level=info
        extra=$(printf 'redis_url: "%s"\nrate_limits: {lease_ms: %s}' "$redis" "${LEASE_MS:-50}") ;;
  nolease) db="$pg?options=-c%20search_path%3Dllmur_prof"; level=info
           extra=$(printf 'redis_url: "%s"\nrate_limits: {lease_requests: 0}' "$redis") ;;
  *) echo "unknown profile $profile" >&2; exit 2 ;;
esac
case $profile in pg|full|nolease)
  psql "$pg" -qc "drop schema if exists llmur_prof cascade; create schema llmur_prof" ;;
esac
config=$out/$profile.yaml
cat > "$config" <<YAML
host: 127.0.0.1
port: $port
application_secret: llmur-profile-application-secret
log_level: $level
database_url: "$db"
$extra
connections:
  - provider: openai/v1
    name: mock
    api_endpoint: http://127.0.0.1:$mock_port
    model: gpt-4o-mini
    api_key: sk-mock-upstream-key
    limits: $limits
deployments:
  - name: gpt-4o-mini
    connections: [mock]
    limits: $limits
projects:
  - name: bench
    limits: $limits
virtual_keys:
  - key: sk-llmur-bench-0123456789abcdef
    project: bench
    deployments: [gpt-4o-mini]
    limits: $limits
YAML

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
chunks=5; [ "${STREAM:-0}" = 1 ] && chunks=20
"$bin/llmur-mock" --port $mock_port --no-record --chunks $chunks >"$out/mock.log" 2>&1 & pids+=($!)
if [ "$profile" = floor ]; then
  target=("$bin/llmur-floor" --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$mock_port")
else
  target=("${LLMUR_BIN:-$bin/llmur}" serve --config "$config")
fi
LLMUR_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$out/callgrind.out.$profile" \
  "${target[@]}" >"$out/llmur.$profile.log" 2>&1 &
vg=$!; pids+=($vg)

drive() {
  python3 - "$port" "$1" "${BODY_BYTES:-0}" "${STREAM:-0}" <<'PY'
import http.client, sys, time
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
stream = ',"stream":true' if sys.argv[4] == "1" else ""
words = "the quick brown fox jumps over the lazy dog "
filler = (words * (size // len(words) + 1))[:max(size - 110, 0)] if size else words * 2
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/health"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"authorization": "Bearer sk-llmur-bench-0123456789abcdef", "content-type": "application/json"}
for i in range(n):
    body = '{"model":"gpt-4o-mini","max_tokens":64%s,"messages":[{"role":"user","content":"#%010d %s"}]}' % (stream, i, filler)
    c.request("POST", "/v1/chat/completions", body, h)
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("status %d" % r.status)
PY
}
drive "$warm"
callgrind_control -i on "$vg" >/dev/null 2>&1
drive "$n"
callgrind_control -i off "$vg" >/dev/null 2>&1
# llmur stops on SIGINT; the floor has no handler, and a background job ignores SIGINT.
if [ "$profile" = floor ]; then kill -TERM "$vg"; else kill -INT "$vg"; fi
wait "$vg" 2>/dev/null || true
pids=("${pids[0]}")
total=$(callgrind_annotate "$out/callgrind.out.$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); t=$1} END {print t}')
case $profile in pg|full|nolease)
  psql "$pg" -qc "drop schema if exists llmur_prof cascade" ;;
esac
echo "$profile: $((total / n)) instructions per request ($total over $n)"
