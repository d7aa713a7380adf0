#!/usr/bin/env bash
# Live migration on loopback, release build: `nuage serve` over two local folders (a, b) and
# a private s3s-fs (s3), two copies of every chunk, MIB MiB of random data uploaded with
# `nuage put`. Then:
#  1. foreground load alone: `small-objects`, 8 clients, 64 KiB objects, PUT then GET;
#  2. the same load while s3 drains at the default pace (50 MB/s): the p99 ratio is the
#     figure (target: no worse than 2x);
#  3. with the pace off (server restarted), s3 activated again and `a` drained: migration
#     MB/s from a local folder to the others, the server idle otherwise.
# Usage: bash bench/drain.sh [MiB] [objects]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
COUNT=${2:-4000}
source bench/common.sh
bench_setup drain-bench
S3_PORT=19516 SERVER_PORT=18441
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
start_s3s $S3_PORT
config() { # $1: migrate_bytes_per_sec
    cat >"$work/server.toml" <<EOF
listen = "127.0.0.1:$SERVER_PORT"
data_dir = "$work/server"
[buckets]
replicas = 2
[workers]
scrub_every_secs = 0
repair_every_secs = 0
gc_every_secs = 0
migrate_bytes_per_sec = $1
[[providers]]
name = "a"
scheme = "fs"
root = "$work/a"
[[providers]]
name = "b"
scheme = "fs"
root = "$work/b"
$(s3_provider $S3_PORT)
EOF
}
state() { nu --json admin provider ls | jq -r --arg n "$1" '.[] | select(.name == $n) | .state'; }
wait_drained() {
    while [ "$(state "$1")" != drained ]; do sleep 0.2; done
}
load() { # $1: label
    "$BIN/small-objects" --server "http://127.0.0.1:$SERVER_PORT" --token "$TOKEN" --bucket data \
        --label "$1" --count "$COUNT" --concurrency 8 --size 65536
}

config 50000000
serve_config $SERVER_PORT
login_bench $SERVER_PORT data
mkdir -p "$work/seed"
for i in $(seq $((MIB / 8))); do head -c $((8 << 20)) /dev/urandom >"$work/seed/$i.bin"; done
"$BIN/nuage" put "$work/seed" data/seed >/dev/null
rm -rf "$work/seed"
sync
on_s3=$(du -sb "$work/s3/bench/ch" | cut -f1)

echo "# $(date -u +%F) on $(nproc) cores; $MIB MiB uploaded, 2 copies over a, b (folders) and s3 (s3s-fs);"
echo "# foreground: small-objects, 8 clients, $COUNT objects of 64 KiB, PUT then GET; data under $work"
echo
echo "| foreground load | PUT/s | PUT p50 ms | PUT p99 ms | GET/s | GET p50 ms | GET p99 ms |"
echo "|---|---|---|---|---|---|---|"
load "alone"
t0=$(now)
nu admin provider drain s3 >/dev/null
load "while s3 drains at 50 MB/s"
during=$(state s3)
wait_drained s3
drain_s=$(since "$t0")
echo
echo "s3 was still '$during' when the loaded run ended; its drain took $drain_s s for $((on_s3 / 1000000)) MB \
($(awk -v b="$on_s3" -v s="$drain_s" 'BEGIN { printf "%.0f", b / 1e6 / s }') MB/s, paced at 50 MB/s)"

# Unpaced: restart with the pace off, take s3 back, drain a (a folder) into b and s3.
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
config 0
nu admin provider activate s3 >/dev/null   # read by the server when it starts
serve_config $SERVER_PORT
on_a=$(du -sb "$work/a/ch" | cut -f1)
t0=$(now)
nu admin provider drain a >/dev/null
wait_drained a
drain_s=$(since "$t0")
echo "a (a folder) drained into b and s3 with the pace off: $((on_a / 1000000)) MB in $drain_s s \
($(awk -v b="$on_a" -v s="$drain_s" 'BEGIN { printf "%.0f", b / 1e6 / s }') MB/s)"
