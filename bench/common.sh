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
