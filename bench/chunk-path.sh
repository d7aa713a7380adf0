#!/usr/bin/env bash
# Single-core and two-core throughput of nuage's chunk path, next to this machine's limits
# measured in the same run: openssl's AES-256-GCM, b3sum on one thread, dd to the disk.
# Usage: bench/chunk-path.sh [MiB]   (default 512; needs openssl, b3sum: apt-get install b3sum)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-512}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
cargo build --release -q -p nuage-bench
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/nuage-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "| stage | throughput |"
echo "|---|---|"
"$CARGO_TARGET_DIR/release/nuage-bench" --mib "$MIB"

# Machine limits, same run.
aes=$(openssl speed -evp aes-256-gcm -seconds 2 2>/dev/null | awk '/^AES-256-GCM/ {print $NF}' | tr -d k)
printf '| limit: openssl AES-256-GCM, 16 KiB blocks (1 core) | %.2f GB/s |\n' "$(echo "$aes / 1000000" | bc -l)"
head -c $((MIB << 20)) /dev/urandom > "$tmp/input"
t0=$(date +%s.%N); b3sum --num-threads 1 "$tmp/input" > /dev/null; t1=$(date +%s.%N)
printf '| limit: b3sum --num-threads 1 of the same size (1 core) | %.2f GB/s |\n' "$(echo "$MIB * 1048576 / ($t1 - $t0) / 1000000000" | bc -l)"
ddout=$(dd if="$tmp/input" of="$tmp/copy" bs=1M conv=fdatasync 2>&1 | tail -1)
printf '| limit: dd to disk with fdatasync | %s |\n' "$(echo "$ddout" | awk -F, '{print $NF}' | sed 's/^ //')"
