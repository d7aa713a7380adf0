#!/usr/bin/env bash
# nuage's whole ingest (files -> chunks -> fs provider) against `restic backup` of the same
# data in the same run: first ingest, then a second one after ../shared/bench's `modA` edit
# (4 KiB inserted in the middle of 50 files >= 1 MiB). Prints a table with MB/s, bytes stored
# and bytes added, and the ratios.
# Usage: bench/ingest-vs-restic.sh   (needs restic: apt-get install restic)
# Environment: NUAGE_DATASET (default /var/tmp/nuage-dataset: rebuilt from the two rustup
# toolchains by ../shared/bench/make-dataset.sh), NUAGE_BENCH_DIR (scratch, default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAKE=${MAKE_DATASET:-$ROOT/../shared/bench/make-dataset.sh}
DATA=${NUAGE_DATASET:-/var/tmp/nuage-dataset}
SCRATCH=$(mktemp -d "${NUAGE_BENCH_DIR:-/var/tmp}/nuage-ingest-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
cargo build --release -q -p nuage-cli
BIN="$CARGO_TARGET_DIR/release"
NUAGE="$BIN/nuage"
source bench/common.sh
export MAKE_DATASET=$MAKE

rebuild_dataset "$DATA"
bytes=$(du -sb --apparent-size "$DATA" | cut -f1)
files=$(find "$DATA" -type f | wc -l)

warm() { find "$DATA" -type f -print0 | xargs -0 cat > /dev/null; }
now() { date +%s.%N; }
size() { du -sb --apparent-size "$1" | cut -f1; }

export RESTIC_PASSWORD=nuage-bench RESTIC_REPOSITORY="$SCRATCH/restic" RESTIC_CACHE_DIR="$SCRATCH/restic-cache"
restic init -q

run_nuage() { warm; local t0; t0=$(now); "$NUAGE" --data-dir "$SCRATCH/nuage" --json ingest "$DATA" > "$SCRATCH/nuage-$1.json"; echo "$(now) - $t0" | bc -l; }
run_restic() { warm; local t0; t0=$(now); restic backup -q "$DATA" > /dev/null; echo "$(now) - $t0" | bc -l; }

wait_for_deleted_inodes

n1=$(run_nuage first); n1_size=$(size "$SCRATCH/nuage/ingest")
r1=$(run_restic); r1_size=$(size "$SCRATCH/restic")
bash "$MAKE" modA "$DATA" >&2
n2=$(run_nuage second); n2_size=$(size "$SCRATCH/nuage/ingest")
r2=$(run_restic); r2_size=$(size "$SCRATCH/restic")

mbps() { echo "$bytes / $1 / 1000000" | bc -l; }
printf 'data set: %d files, %d bytes\n\n' "$files" "$bytes"
echo "| | nuage | restic 0.14 | nuage / restic |"
echo "|---|---|---|---|"
printf '| first ingest, s | %.1f | %.1f | %.2f× restic speed |\n' "$n1" "$r1" "$(echo "$r1 / $n1" | bc -l)"
printf '| first ingest, MB/s | %.0f | %.0f | |\n' "$(mbps "$n1")" "$(mbps "$r1")"
printf '| bytes stored after first | %d | %d | %.2f |\n' "$n1_size" "$r1_size" "$(echo "$n1_size / $r1_size" | bc -l)"
printf '| second ingest after modA, s | %.1f | %.1f | %.2f× restic speed |\n' "$n2" "$r2" "$(echo "$r2 / $n2" | bc -l)"
printf '| bytes added by modA | %d | %d | %.2f |\n' "$((n2_size - n1_size))" "$((r2_size - r1_size))" \
  "$(echo "($n2_size - $n1_size) / ($r2_size - $r1_size)" | bc -l)"
echo
echo "nuage first:  $(cat "$SCRATCH/nuage-first.json")"
echo "nuage second: $(cat "$SCRATCH/nuage-second.json")"
echo "(the second ingest reads only the files whose size, mtime, ctime or inode changed, as restic does)"
