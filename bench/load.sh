#!/usr/bin/env bash
# Load test of the durable callback path: wrk against a real `qunyun serve`
# over distinct pre-encrypted change_external_chat callbacks, then a check
# that the inbox holds every event wrk saw acknowledged.
#
#   bench/load.sh                         # full rate: 2 wrk threads, 64 connections, 10 s
#   CONNECTIONS=4 THREADS=1 bench/load.sh # a lighter load, for latency at a lower rate
#
# Environment: DURATION (s, default 10), CONNECTIONS (64), THREADS (2),
# COUNT (callbacks to generate, default 40000 per second of DURATION),
# QUNYUN (binary, default target/release/qunyun; built if missing), PORT (18480),
# METRICS_OUT (file: the server's /metrics after the run, for batch sizes and lock waits).
# Prints one summary line:
#   events/s=… p50_ms=… p99_ms=… non2xx=… acked=… stored=… check=ok|FAILED
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
COUNT=${COUNT:-$((DURATION * 40000))}
PORT=${PORT:-18480}
QUNYUN=${QUNYUN:-target/release/qunyun}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (apt)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
fi
if [ ! -x "$QUNYUN" ]; then
  cargo build --release --bin qunyun >&2
fi

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh key per run: qunyun refuses WeCom's published sample keys.
aes_key=$(head -c 64 /dev/urandom | base64 -w0 | tr -d '=+/' | cut -c1-43)

cat >"$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[database]
path = "$work/qunyun.db"
[wecom]
corp_id = "wwLOADTEST0000000"
# Nothing listens here: the pipeline's WeCom calls fail fast instead of leaving the machine.
api_base = "http://127.0.0.1:1/cgi-bin/"
[[wecom.apps]]
name = "main"
agent_id = 1000002
secret = "load-test"
token = "LoadTestToken"
encoding_aes_key = "$aes_key"
TOML

"$QUNYUN" bench-callbacks --config "$work/config.toml" --count "$COUNT" --out "$work/callbacks.txt"

RUST_LOG=${RUST_LOG:-warn} "$QUNYUN" serve --config "$work/config.toml" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/callbacks.lua \
  "http://127.0.0.1:$PORT" -- "$work/callbacks.txt" "$THREADS" >"$work/wrk.txt"
line=$(grep '^WRK ' "$work/wrk.txt") || { cat "$work/wrk.txt" >&2; exit 1; }
if [ -n "${METRICS_OUT:-}" ]; then
  curl -fs "http://127.0.0.1:$PORT/metrics" >"$METRICS_OUT" || true
fi
kill "$server"
wait "$server" || true
server=""

field() { sed -E "s/.*[ ]$1=([^ ]+).*/\1/" <<<"$line"; }
requests=$(field requests)
non2xx=$(field non2xx)
wrapped=$(field wrapped)
acked=$((requests - non2xx))
stored=$(sqlite3 "$work/qunyun.db" 'select count(*) from inbox')
rate=$(awk -v r="$requests" -v s="$(field seconds)" 'BEGIN { printf "%.0f", r / s }')
check=ok
# Every acknowledged event is distinct (no wrap) and stored; requests cut off
# by wrk's stop may be stored without being counted, never the reverse.
if [ "$wrapped" -ne 0 ] || [ "$non2xx" -ne 0 ] || [ "$stored" -lt "$acked" ]; then check=FAILED; fi
echo "events/s=$rate p50_ms=$(field p50_ms) p99_ms=$(field p99_ms) non2xx=$non2xx" \
  "socket_errors=$(field socket_errors) acked=$acked stored=$stored" \
  "threads=$THREADS connections=$CONNECTIONS duration_s=$DURATION load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)" \
  "check=$check"
[ "$check" = ok ]
