# Shared by the benchmark scripts (sourced, not run). Expects BIN (the folder of the release
# binaries) and a `pids` array, whose processes the caller's cleanup stops.

# The data set of the ingest and dedup benchmarks, rebuilt pristine in $1 (modA edits in
# place) by ../shared/bench/make-dataset.sh; sets DELETED_AT for wait_for_deleted_inodes.
rebuild_dataset() {
    local data=$1 make=${MAKE_DATASET:-$(dirname "${BASH_SOURCE[0]}")/../../shared/bench/make-dataset.sh}
    rm -rf "$data"
    DELETED_AT=$(date +%s)
    STABLE_SRC=${STABLE_SRC:-$(rustup toolchain list -v | awk '/^stable/{print $NF}')} \
    NIGHTLY_SRC=${NIGHTLY_SRC:-$(rustup toolchain list -v | awk '/^nightly/{print $NF}')} \
      bash "$make" build "$data"
}

# On ext4 without a journal (this project's machines), creating a file skips over inodes
# freed in the last 30 s + 5 × dirty_expire (180 s by default), one inode-table lookup each:
# right after deleting the old copy's 117k files, every file nuage creates paid for that scan,
# which restic (a few hundred pack files) hardly does. Let the deletion age first.
wait_for_deleted_inodes() {
    local wait_s=$((DELETED_AT + 185 - $(date +%s)))
    if [ "$wait_s" -gt 0 ]; then
        echo "waiting ${wait_s}s for the deleted inodes to age (see bench/common.sh)" >&2
        sleep "$wait_s"
    fi
}

# Starts `nuage serve` on port $2 with data dir $1 (database: $NUAGE_DATABASE_URL or SQLite),
# creates an account, logs in (client config: $NUAGE_CLIENT_CONFIG) and creates the bucket
# `bench`; sets SERVER_PID and TOKEN.
start_nuage() {
    local dir=$1 port=$2
    "$BIN/nuage" --data-dir "$dir" serve --listen "127.0.0.1:$port" >"$dir.log" 2>&1 &
    SERVER_PID=$!
    pids+=("$SERVER_PID")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        kill -0 "$SERVER_PID" || { cat "$dir.log"; exit 1; }
        sleep 0.1
    done
    TOKEN=$("$BIN/nuage" --data-dir "$dir" --json admin account create "bench$port" | sed 's/.*"token":"\([^"]*\)".*/\1/')
    "$BIN/nuage" --server "http://127.0.0.1:$port" login --with-token "$TOKEN" >/dev/null
    "$BIN/nuage" bucket create bench >/dev/null
}

# The start of a benchmark of `nuage serve`: BIN (the release build of this tree, or the
# binaries in NUAGE_BENCH_BIN when set: bench/ab.sh runs a script over each side's), an
# empty work folder (`work`, removed at exit with the processes in `pids`), a client
# configuration of its own, no NUAGE_* variables from the caller's shell. $1 names the work
# folder.
bench_setup() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
    if [ -n "${NUAGE_BENCH_BIN:-}" ]; then
        BIN=$NUAGE_BENCH_BIN
    else
        cargo build --release -q -p nuage-cli -p nuage-bench
        BIN=$CARGO_TARGET_DIR/release
    fi
    work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nuage-$1.XXXXXX")
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export NUAGE_CLIENT_CONFIG=$work/client.toml NUAGE_CACHE_DIR=$work/client-cache
    unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_CONFIG NUAGE_DATABASE_URL NUAGE_REGION
}

# A private s3s-fs on port $1 with a bucket `bench`, its data in $work/s3 (one file per
# object), keys bench-ak / bench-secret-key.
start_s3s() {
    local s3s=${NUAGE_TEST_S3S_BIN:-$HOME/.cache/nuage-tools/s3s/bin/s3s-fs}
    [ -x "$s3s" ] || { echo "s3s-fs missing at $s3s: run scripts/test-servers.sh start once" >&2; exit 1; }
    mkdir -p "$work/s3/bench"
    "$s3s" --host 127.0.0.1 --port "$1" --access-key bench-ak --secret-key bench-secret-key "$work/s3" \
        >"$work/s3.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "s3s-fs did not listen on $1" >&2; cat "$work/s3.log" >&2; exit 1
}

# The `[[providers]]` table of the s3s-fs of start_s3s on port $1, named $2 (default s3).
s3_provider() {
    printf '[[providers]]\nname = "%s"\nscheme = "s3"\nbucket = "bench"\nendpoint = "http://127.0.0.1:%s"\naccess_key_id = "bench-ak"\nsecret_access_key = "bench-secret-key"\n' "${2:-s3}" "$1"
}

# `nuage` with the configuration $work/server.toml.
nu() { "$BIN/nuage" --config "$work/server.toml" "$@"; }

# Starts `nuage serve` on $work/server.toml, listening on port $1; sets SERVER (its pid).
serve_config() {
    "$BIN/nuage" --config "$work/server.toml" serve >>"$work/server.log" 2>&1 &
    SERVER=$!
    pids+=("$SERVER")
    for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$1/healthz" && return 0; sleep 0.05; done
    echo "nuage serve did not answer on $1" >&2; tail -20 "$work/server.log" >&2; exit 1
}

# Creates an account on the server of $work/server.toml (port $1), logs in and creates the
# bucket $2; sets TOKEN.
login_bench() {
    TOKEN=$(nu --json admin account create bench | jq -r .token)
    "$BIN/nuage" --server "http://127.0.0.1:$1" login --with-token "$TOKEN" >/dev/null
    "$BIN/nuage" bucket create "$2" >/dev/null
}
