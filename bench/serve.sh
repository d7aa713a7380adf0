#!/usr/bin/env bash
# The link server under load, on loopback, with the release build:
#  1. one big file (default 1 GiB) up and down through `nuage serve` (SQLite + a local folder)
#     with the CLI, the server's peak RSS, and nginx serving the same file statically (the
#     ceiling) in the same run;
#  2. small objects (4 KiB, 64 concurrent clients): PUTs/s, GETs/s and latency, on SQLite and
#     on PostgreSQL (started by scripts/test-servers.sh).
# Usage: bash bench/serve.sh [MiB] [small-object count]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
COUNT=${2:-20000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
cargo build --release -q -p nuage-cli -p nuage-bench
BIN=$CARGO_TARGET_DIR/release
source bench/common.sh
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nuage-serve-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NUAGE_CLIENT_CONFIG=$work/client.toml
unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_CONFIG

rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
seconds() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }

echo "# $(date -u +%F) on $(nproc) cores; file: $MIB MiB of random data; data under $work"
mkdir -p "$work/www" "$work/nginx-tmp"
head -c $((MIB << 20)) /dev/urandom >"$work/www/big.bin"
head -c $((MIB << 20)) /dev/urandom >"$work/other.bin"   # for the smart upload: new chunks too
chmod 755 "$work" "$work/www" && chmod 644 "$work/www/big.bin"   # nginx workers run as nobody
sync

# 1. Big file through nuage (SQLite + fs), with the CLI.
unset NUAGE_DATABASE_URL
start_nuage "$work/sqlite" 18420
t0=$(date +%s.%N)
"$BIN/nuage" put --simple "$work/www/big.bin" bench/big.bin >/dev/null
up=$(seconds "$t0")
t0=$(date +%s.%N)
"$BIN/nuage" put "$work/other.bin" bench/other.bin >/dev/null
smart=$(seconds "$t0")
t0=$(date +%s.%N)
"$BIN/nuage" get bench/big.bin "$work/nuage.out" >/dev/null
down=$(seconds "$t0")
rss=$(rss_mib "$SERVER_PID")
cmp -s "$work/www/big.bin" "$work/nuage.out" || { echo "nuage download differs"; exit 1; }
rm -f "$work/nuage.out"

# nginx serving the same file statically, written to the same disk.
sed -e "s#@ROOT@#$work#g" -e "s#@PORT@#18081#g" bench/nginx-static.conf >"$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:18081/big.bin" && break; sleep 0.1; done
t0=$(date +%s.%N)
curl -sf -o "$work/nginx.out" "http://127.0.0.1:18081/big.bin"
ndown=$(seconds "$t0")
rm -f "$work/nginx.out"
sync
# The same, with the file fsynced before the clock stops, as `nuage get` does before it
# renames a verified download into place.
t0=$(date +%s.%N)
curl -sf -o "$work/nginx.out" "http://127.0.0.1:18081/big.bin"
sync "$work/nginx.out"
nsync=$(seconds "$t0")
rm -f "$work/nginx.out"
# The disk's own durable write rate: the ceiling of any upload whose chunks are fsynced.
sync
t0=$(date +%s.%N)
dd if=/dev/zero of="$work/dd.bin" bs=1M count="$MIB" conv=fdatasync status=none
dd_s=$(seconds "$t0")
rm -f "$work/dd.bin"

mbs() { awk -v m="$MIB" -v s="$1" 'BEGIN { printf "%.0f", m * 1.048576 / s }'; }
echo
echo "| $MIB MiB file, loopback | MB/s | seconds |"
echo "|---|---|---|"
echo "| nuage put --simple (CLI streams → serve chunks, seals → fs) | $(mbs "$up") | $up |"
echo "| nuage put, smart (CLI chunks, seals → serve verifies → fs) | $(mbs "$smart") | $smart |"
echo "| nuage get (serve → CLI, verified) | $(mbs "$down") | $down |"
echo "| nginx static → curl (ceiling) | $(mbs "$ndown") | $ndown |"
echo "| nginx static → curl, file fsynced | $(mbs "$nsync") | $nsync |"
echo "| dd to disk with fdatasync (disk limit) | $(mbs "$dd_s") | $dd_s |"
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "download ratio nuage / nginx: $(ratio "$ndown" "$down"); against nginx with fsync: $(ratio "$nsync" "$down")"
echo "upload ratio nuage / disk limit: $(ratio "$dd_s" "$up")"
echo "nuage serve peak RSS: $rss MiB"

# 2. Small objects, SQLite then PostgreSQL.
echo
echo "| $COUNT objects of 4 KiB, 64 clients | PUT/s | PUT p50 ms | PUT p99 ms | GET/s | GET p50 ms | GET p99 ms |"
echo "|---|---|---|---|---|---|---|"
"$BIN/small-objects" --server http://127.0.0.1:18420 --token "$TOKEN" --bucket bench --label "SQLite + fs" --count "$COUNT"
eval "$(scripts/test-servers.sh start 2>/dev/null)"
db="nuage_bench_$$"
psql -q "$NUAGE_TEST_PG_URL" -c "CREATE DATABASE $db"
export NUAGE_DATABASE_URL="${NUAGE_TEST_PG_URL%/*}/$db"
start_nuage "$work/pg" 18421
"$BIN/small-objects" --server http://127.0.0.1:18421 --token "$TOKEN" --bucket bench --label "PostgreSQL + fs" --count "$COUNT"
