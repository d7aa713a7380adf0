#!/usr/bin/env bash
# Smart re-upload of the edited data set, against restic and rclone, in one run:
#  1. the data set (../shared/bench/make-dataset.sh: two rustup toolchains, 117,769 files)
#     goes up once with `nuage put` (smart upload, to `nuage serve` on SQLite + a local
#     folder), once with `restic backup` (local repository) and once with `rclone copy` to the
#     S3 server of scripts/test-servers.sh;
#  2. `modA` inserts 4 KiB in the middle of 50 large files;
#  3. the same three commands run again: seconds and bytes sent (nuage: chunk bytes sent, from
#     its --json; restic: bytes added to its repository; rclone: bytes transferred, from its
#     JSON stats).
# Usage: bash bench/smart-upload.sh   (needs restic and rclone: apt-get install restic rclone)
# Environment: NUAGE_DATASET (default /var/tmp/nuage-dataset), NUAGE_BENCH_DIR (scratch,
# default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAKE=${MAKE_DATASET:-$ROOT/../shared/bench/make-dataset.sh}
DATA=${NUAGE_DATASET:-/var/tmp/nuage-dataset}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
cargo build --release -q -p nuage-cli
BIN="$CARGO_TARGET_DIR/release"
NUAGE="$BIN/nuage"
source bench/common.sh
export MAKE_DATASET=$MAKE
SCRATCH=$(mktemp -d "${NUAGE_BENCH_DIR:-/var/tmp}/nuage-smart-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

rebuild_dataset "$DATA"
bytes=$(du -sb --apparent-size "$DATA" | cut -f1)
files=$(find "$DATA" -type f | wc -l)
now() { date +%s.%N; }
size() { du -sb --apparent-size "$1" | cut -f1; }
warm() { find "$DATA" -type f -print0 | xargs -0 cat > /dev/null; }

# nuage serve on loopback, an account, the bucket `bench`.
export NUAGE_CLIENT_CONFIG=$SCRATCH/client.toml NUAGE_CACHE_DIR=$SCRATCH/cache
unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_CONFIG NUAGE_DATABASE_URL
start_nuage "$SCRATCH/nuage" 18430

# restic, local repository.
export RESTIC_PASSWORD=nuage-bench RESTIC_REPOSITORY="$SCRATCH/restic" RESTIC_CACHE_DIR="$SCRATCH/restic-cache"
restic init -q

# rclone to the S3 server of the test servers.
eval "$(scripts/test-servers.sh start 2>/dev/null)"
export RCLONE_CONFIG_NUAGES3_TYPE=s3 RCLONE_CONFIG_NUAGES3_PROVIDER=Other \
    RCLONE_CONFIG_NUAGES3_ENDPOINT="$NUAGE_TEST_S3_ENDPOINT" RCLONE_CONFIG_NUAGES3_REGION="$NUAGE_TEST_S3_REGION" \
    RCLONE_CONFIG_NUAGES3_ACCESS_KEY_ID="$NUAGE_TEST_S3_ACCESS_KEY" \
    RCLONE_CONFIG_NUAGES3_SECRET_ACCESS_KEY="$NUAGE_TEST_S3_SECRET_KEY"
RCLONE_DEST="nuages3:$NUAGE_TEST_S3_BUCKET/rclone-bench-$$"

wait_for_deleted_inodes

run_nuage() {
    warm; local t0; t0=$(now)
    "$NUAGE" --json put "$DATA" bench/ds > "$SCRATCH/nuage-$1.json"
    echo "$(now) - $t0" | bc -l
}
run_restic() { warm; local t0; t0=$(now); restic backup -q "$DATA" > /dev/null; echo "$(now) - $t0" | bc -l; }
run_rclone() {
    warm; local t0; t0=$(now)
    # AWS_CA_BUNDLE, when the environment sets it, makes rclone's S3 client refuse to start.
    # --no-update-modtime: s3s-fs answers 500 to the server-side copy rclone uses to change an
    # object's modification time; without it one retried upload fails the whole run.
    env -u AWS_CA_BUNDLE rclone copy "$DATA" "$RCLONE_DEST" --use-json-log -v --stats 1h --transfers 8 \
        --no-update-modtime \
        2> "$SCRATCH/rclone-$1.log" || { tail -5 "$SCRATCH/rclone-$1.log" >&2; exit 1; }
    echo "$(now) - $t0" | bc -l
}
rclone_bytes() {
    python3 -c 'import json,sys
last = 0
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if "stats" in j:
        last = j["stats"]["bytes"]
print(last)' "$1"
}
nuage_sent() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$1"; }

n1=$(run_nuage first); r1=$(run_restic); r1_size=$(size "$SCRATCH/restic"); c1=$(run_rclone first)
bash "$MAKE" modA "$DATA" >&2
n2=$(run_nuage second); r2=$(run_restic); r2_size=$(size "$SCRATCH/restic"); c2=$(run_rclone second)

n1_sent=$(nuage_sent "$SCRATCH/nuage-first.json"); n2_sent=$(nuage_sent "$SCRATCH/nuage-second.json")
c1_sent=$(rclone_bytes "$SCRATCH/rclone-first.log"); c2_sent=$(rclone_bytes "$SCRATCH/rclone-second.log")
r2_added=$((r2_size - r1_size))
ratio() { echo "$1 / $2" | bc -l; }

printf 'data set: %d files, %d bytes; 2 cores; all on loopback\n\n' "$files" "$bytes"
echo "| | nuage put (smart) | restic backup | rclone copy to S3 |"
echo "|---|---|---|---|"
printf '| first upload, s | %.1f | %.1f | %.1f |\n' "$n1" "$r1" "$c1"
printf '| first upload, bytes sent (restic: repository size) | %d | %d | %d |\n' "$n1_sent" "$r1_size" "$c1_sent"
printf '| after modA, s | %.1f | %.1f | %.1f |\n' "$n2" "$r2" "$c2"
printf '| after modA, bytes sent (restic: added to the repository) | %d | %d | %d |\n' "$n2_sent" "$r2_added" "$c2_sent"
echo
printf 'after modA: nuage bytes sent / restic added = %.2f (target <= 1.2); / rclone sent = %.4f (target <= 0.05)\n' \
    "$(ratio "$n2_sent" "$r2_added")" "$(ratio "$n2_sent" "$c2_sent")"
printf 'after modA: nuage time / restic time = %.2f (target <= 1.0)\n' "$(ratio "$n2" "$r2")"
echo
echo "nuage second: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print({k: j[k] for k in ("bytes", "stored_bytes", "bytes_sent", "unchanged", "seconds")})' "$SCRATCH/nuage-second.json")"
