#!/usr/bin/env bash
# Scrub and repair throughput, release build, on loopback: `nuage serve` with two providers
# (a local folder and a private s3s-fs), two copies of every chunk; MIB MiB of random data
# uploaded with `nuage put`; then, with the pace off:
#  1. `nuage admin scrub`: every copy read back and verified (MB/s over both providers);
#  2. every copy on the S3 server deleted, `nuage admin repair`: each chunk read from the
#     folder, written to S3, read back and verified (MB/s of chunks restored);
# and, as the ceiling of step 1 on the folder, `b3sum` over the same chunk files.
# Usage: bash bench/scrub.sh [MiB]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
source bench/common.sh
bench_setup scrub-bench
S3_PORT=19515 SERVER_PORT=18440
seconds() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
start_s3s $S3_PORT
cat >"$work/server.toml" <<EOF
listen = "127.0.0.1:$SERVER_PORT"
data_dir = "$work/server"
[buckets]
replicas = 2
[workers]
scrub_every_secs = 0
repair_every_secs = 0
scrub_bytes_per_sec = 0
repair_bytes_per_sec = 0
[[providers]]
name = "local"
scheme = "fs"
root = "$work/server/chunks"
$(s3_provider $S3_PORT)
EOF
serve_config $SERVER_PORT
login_bench $SERVER_PORT data
head -c $((MIB << 20)) /dev/urandom >"$work/big.bin"
"$BIN/nuage" put "$work/big.bin" data/big.bin >/dev/null || { tail -20 "$work/server.log" "$work/s3.log" >&2; exit 1; }
rm "$work/big.bin"
sync

echo "# $(date -u +%F) on $(nproc) cores; $MIB MiB of random data, 2 copies (folder + s3s-fs); data under $work"
echo
echo "| pass, pace off | chunks | MB | seconds | MB/s | found |"
echo "|---|---|---|---|---|---|"
t0=$(date +%s.%N)
scrub=$(nu --json admin scrub 2>/dev/null)
s=$(seconds "$t0")
jq -r --arg s "$s" '"| scrub (both copies) | \(.chunks) | \(.bytes / 1e6 | floor) | \($s) | \(.bytes / 1e6 / ($s | tonumber) | floor) | \(.found) |"' <<<"$scrub"
# The ceiling on the folder: read and hash the same files (b3sum, when installed).
if command -v b3sum >/dev/null; then
    t0=$(date +%s.%N)
    find "$work/server/chunks/ch" -type f -print0 | xargs -0 cat | b3sum >/dev/null
    s=$(seconds "$t0")
    bytes=$(du -sb "$work/server/chunks/ch" | cut -f1)
    awk -v b="$bytes" -v s="$s" 'BEGIN { printf "| b3sum over the folder'"'"'s chunk files (one copy) | | %d | %s | %d | |\n", b / 1e6, s, b / 1e6 / s }'
fi
# Repair: lose every copy on S3, restore them.
rm -rf "$work/s3/bench/ch"
nu --json admin scrub >/dev/null 2>&1   # records them missing
t0=$(date +%s.%N)
repair=$(nu --json admin repair 2>/dev/null)
s=$(seconds "$t0")
# Its bytes count each restored chunk twice (read from the folder, written to S3): MB restored.
jq -r --arg s "$s" '"| repair (every S3 copy lost; MB restored) | \(.chunks) | \(.bytes / 2e6 | floor) | \($s) | \(.bytes / 2e6 / ($s | tonumber) | floor) | \(.found) |"' <<<"$repair"
