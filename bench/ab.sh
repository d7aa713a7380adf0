#!/usr/bin/env bash
# Before and after a change, in one run: the release binaries of two commits side by side,
# alternated (before, after, after, before, …) so that the machine's drift falls on both
# alike. Prints one row per round and the ratio after / before of the medians.
# - AB_LOAD=small (default): the small-object load of bench/serve.sh (4 KiB, 64 clients, PUT
#   then GET) on SQLite + a local folder, a fresh server each round.
# - AB_LOAD=drain: bench/drain.sh (this tree's script, each side's binaries) with MIB = the
#   third argument (default 256) and 2,000 objects: the foreground's PUT/GET p99 alone and
#   while s3 drains at 50 MB/s, and the unpaced drain of a folder in MB/s.
# - AB_LOAD=ingest: `nuage ingest` of the data set (../shared/bench/make-dataset.sh, in
#   NUAGE_DATASET, default /var/tmp/nuage-dataset) into a fresh data dir each round, page
#   cache warm; the data dirs are deleted only at the end (see wait_for_deleted_inodes).
# Usage: bash bench/ab.sh BEFORE [AFTER=HEAD] [objects=10000] [rounds=4]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/ab.sh BEFORE [AFTER] [objects] [rounds]}
AFTER=${2:-HEAD}
COUNT=${3:-10000}
ROUNDS=${4:-4}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nuage-ab.XXXXXX")
pids=()
trees=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for t in "${trees[@]}"; do git worktree remove --force "$t" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export NUAGE_CLIENT_CONFIG=$work/client.toml
unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_CONFIG NUAGE_DATABASE_URL

# Both builds share one target dir (the dependencies build once); each side's binaries are
# copied out before the other builds over them. Cargo tells a path crate's sources changed by
# their times, not their place: each side's tree is checked out just before it builds, so its
# files are newer than anything the other side built (a tree older than the artifacts in the
# target dir would be taken as built already).
build() { # $1: side, $2: commit
    local tree=$work/tree-$1
    git worktree add -q --detach "$tree" "$2"
    trees+=("$tree")
    (cd "$tree" && cargo build --release -q -p nuage-cli -p nuage-bench)
    mkdir -p "$work/$1"
    cp "$CARGO_TARGET_DIR/release/nuage" "$CARGO_TARGET_DIR/release/small-objects" "$work/$1/"
}
# Calls $1 SIDE ROUND for each round, alternating which side goes first.
alternate() {
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then "$1" before "$r"; "$1" after "$r"; else "$1" after "$r"; "$1" before "$r"; fi
    done
}

# The medians of columns 3 to $2 of the rows in $work/rows, each side's, and after / before
# (above 1: after is higher); $1 is the header's cells after "median" (e.g. " s | MB/s |").
medians() {
    awk -F'|' -v head="$1" -v last="$2" '
        function median(side, col,   n, i, j, t, v) {
            n = count[side]
            for (i = 1; i <= n; i++) v[i] = cell[side, i, col]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        {
            side = ($2 ~ /before/) ? "before" : "after"
            n = ++count[side]
            for (c = 3; c <= last; c++) { x = $c; gsub(/[ ,a-z]/, "", x); cell[side, n, c] = x + 0 }
        }
        END {
            printf "| median |%s\n|---|", head
            for (c = 3; c <= last; c++) printf "---|"
            printf "\n"
            for (s = 0; s < 2; s++) {
                side = s ? "after" : "before"
                printf "| %s |", side
                for (c = 3; c <= last; c++) printf " %g |", median(side, c)
                printf "\n"
            }
            printf "| after / before |"
            for (c = 3; c <= last; c++) printf " %.2f |", median("after", c) / median("before", c)
            printf "\n"
        }' "$work/rows"
}

LOAD=${AB_LOAD:-small}
echo "# $(date -u +%F) on $(nproc) cores: before $(git rev-parse --short "$BEFORE"), after $(git rev-parse --short "$AFTER"); $LOAD, $ROUNDS rounds each"
build before "$BEFORE"
build after "$AFTER"

if [ "$LOAD" = drain ]; then
    MIB=${3:-256}
    drain_round() { # $1: side, $2: round
        local out
        out=$(NUAGE_BENCH_BIN=$work/$1 bash bench/drain.sh "$MIB" 2000)
        echo "$out" > "$work/drain-$1-$2.txt"
        # p99 of PUT and GET alone (row 1) and while s3 drains (row 2), the unpaced MB/s.
        local alone during unpaced
        alone=$(echo "$out" | awk -F'|' '$2 ~ /alone/ { gsub(/ /, "", $5); gsub(/ /, "", $8); print $5 " | " $8 }')
        during=$(echo "$out" | awk -F'|' '$2 ~ /while s3 drains/ { gsub(/ /, "", $5); gsub(/ /, "", $8); print $5 " | " $8 }')
        unpaced=$(echo "$out" | sed -n 's/.*pace off: .*(\([0-9]*\) MB\/s).*/\1/p')
        echo "| $1, round $2 | $alone | $during | $unpaced |" | tee -a "$work/rows"
    }
    echo
    echo "| drain.sh $MIB 2000 | PUT p99 ms alone | GET p99 ms alone | PUT p99 ms while s3 drains | GET p99 ms while s3 drains | unpaced drain MB/s |"
    echo "|---|---|---|---|---|---|"
    alternate drain_round
    echo
    medians " PUT p99 alone | GET p99 alone | PUT p99 draining | GET p99 draining | unpaced MB/s |" 7
    exit 0
fi

if [ "$LOAD" = ingest ]; then
    DATA=${NUAGE_DATASET:-/var/tmp/nuage-dataset}
    BIN=$work/before
    source bench/common.sh
    if [ ! -d "$DATA" ]; then rebuild_dataset "$DATA"; wait_for_deleted_inodes; fi
    bytes=$(du -sb --apparent-size "$DATA" | cut -f1)
    files=$(find "$DATA" -type f | wc -l)
    find "$DATA" -type f -print0 | xargs -0 cat > /dev/null
    ingest_round() { # $1: side, $2: round
        local t0 t1
        t0=$(date +%s.%N)
        "$work/$1/nuage" --data-dir "$work/data-$1-$2" --json ingest "$DATA" > /dev/null
        t1=$(date +%s.%N)
        printf '| %s, round %s | %.2f | %.0f |\n' "$1" "$2" "$(echo "$t1 - $t0" | bc -l)" \
            "$(echo "$bytes / ($t1 - $t0) / 1000000" | bc -l)" | tee -a "$work/rows"
    }
    echo
    echo "| first ingest of $files files, $bytes bytes, fs provider | s | MB/s |"
    echo "|---|---|---|"
    alternate ingest_round
    echo
    medians " s | MB/s |" 4
    exit 0
fi

round() { # $1: side, $2: round
    BIN=$work/$1
    source bench/common.sh
    local dir=$work/data-$1-$2 port=$((18460 + $2))
    start_nuage "$dir" "$port"
    "$BIN/small-objects" --server "http://127.0.0.1:$port" --token "$TOKEN" --bucket bench \
        --label "$1, round $2" --count "$COUNT" | tee -a "$work/rows"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$dir"
}
echo
echo "| $COUNT objects of 4 KiB, 64 clients, SQLite + fs | PUT/s | PUT p50 ms | PUT p99 ms | GET/s | GET p50 ms | GET p99 ms |"
echo "|---|---|---|---|---|---|---|"
alternate round
echo
medians " PUT/s | PUT p50 ms | PUT p99 ms | GET/s | GET p50 ms | GET p99 ms |" 8
