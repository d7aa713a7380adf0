#!/usr/bin/env bash
# test-servers.sh: start, stop and describe the real servers used by nuage's
# test suites. They all listen on loopback (127.0.0.1) only:
#
#   s3        s3s-fs 0.14.1 (S3 API, signatures checked), bucket "nuage-test"
#   azurite   Azurite 3.35.0, blob service only, container "nuage-test"
#   postgres  a private PostgreSQL cluster (Debian packages), database "nuage"
#
# Usage:
#   scripts/test-servers.sh start    # install what is missing, start what is not
#                                    # running, then print the same as `env`
#   scripts/test-servers.sh env      # print `export VAR=value` lines
#   scripts/test-servers.sh status   # one line per server
#   scripts/test-servers.sh stop     # stop what `start` started (by pidfile)
#
#   eval "$(scripts/test-servers.sh start)"  # then run the test suites
#
# `start` is idempotent: a server still running from an earlier `start` (its
# pidfile names a live process AND it answers on its port) is left alone.
# `stop` is idempotent and only ends the processes named in its pidfiles.
# Only the export lines go to stdout; every other message goes to stderr.
#
# Environment:
#   NUAGE_TEST_DIR      state: data, logs (<name>.log), pidfiles (<name>.pid)
#                       default: ${TMPDIR:-/tmp}/nuage-test-servers
#   NUAGE_TOOLS_DIR     installed tools, outside the repo so CI can cache them
#                       default: $HOME/.cache/nuage-tools
#   NUAGE_S3_PORT       default 9514
#   NUAGE_AZURITE_PORT  default 10500
#   NUAGE_PG_PORT       default 15432
#   (The defaults are below Linux's ephemeral range, 32768-60999: a port in it can be taken
#   at any moment as the local end of some connection, and a listener then fails to bind.)
#
# Exported by `env` (read by the Rust test suites):
#   NUAGE_TEST_S3_ENDPOINT, NUAGE_TEST_S3_BUCKET, NUAGE_TEST_S3_REGION,
#   NUAGE_TEST_S3_ACCESS_KEY, NUAGE_TEST_S3_SECRET_KEY,
#   NUAGE_TEST_AZBLOB_ENDPOINT, NUAGE_TEST_AZBLOB_CONTAINER,
#   NUAGE_TEST_AZBLOB_ACCOUNT_NAME, NUAGE_TEST_AZBLOB_ACCOUNT_KEY,
#   NUAGE_TEST_PG_URL,
#   NUAGE_TEST_S3S_BIN, NUAGE_TEST_AZURITE_BIN (absolute paths, so a test can
#   start a private instance of its own, e.g. to kill it).
#
# Requirements: bash, curl, ps, node + npm (Azurite), cargo (only to install
# s3s-fs when missing), PostgreSQL server binaries (installed with apt-get when
# missing). PostgreSQL refuses to run as root: when this script runs as root,
# the cluster belongs to, and runs as, the `postgres` system user, so the state
# dir must be reachable by that user (the default under /tmp is).

set -euo pipefail

# ---------------------------------------------------------------- settings --

abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

STATE=$(abspath "${NUAGE_TEST_DIR:-${TMPDIR:-/tmp}/nuage-test-servers}")
STATE=${STATE%/}
TOOLS=$(abspath "${NUAGE_TOOLS_DIR:-$HOME/.cache/nuage-tools}")
TOOLS=${TOOLS%/}

S3_PORT=${NUAGE_S3_PORT:-9514}
AZ_PORT=${NUAGE_AZURITE_PORT:-10500}
PG_PORT=${NUAGE_PG_PORT:-15432}
HOST=127.0.0.1

READY_TIMEOUT=30 # seconds to wait for a server to answer
STOP_TIMEOUT=10  # seconds between TERM and KILL

S3S_VERSION=0.14.1
S3S_BIN=$TOOLS/s3s/bin/s3s-fs
S3_BUCKET=nuage-test
S3_REGION=us-east-1
S3_ACCESS_KEY=nuage-test-ak
S3_SECRET_KEY=nuage-test-secret-key

AZURITE_VERSION=3.35.0
AZ_BIN=$TOOLS/azurite/node_modules/.bin/azurite-blob
AZ_CONTAINER=nuage-test
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

PG_USER=nuage
PG_DB=nuage
PG_DIR=$STATE/postgres     # owned by the user running the cluster
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/sock       # unix socket directory
PG_OS_USER=postgres        # system user running the cluster when we are root

# ----------------------------------------------------------------- helpers --

log() { printf 'test-servers: %s\n' "$*" >&2; }
die() { printf 'test-servers: error: %s\n' "$*" >&2; exit 1; }

log_tail() { # file
    if [[ -s $1 ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 30 "$1" >&2 || true
        printf -- '---\n' >&2
    fi
}

# pid_alive PID NAME: PID is a live (non-zombie) process whose command line
# contains NAME and the state dir, i.e. it is the server we started. Guards
# against a stale pidfile whose PID has been reused by something else.
pid_alive() {
    local info
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    info=$(ps -o stat= -o args= -p "$1" 2>/dev/null) || return 1
    info=${info#"${info%%[![:space:]]*}"}
    [[ $info != Z* && $info == *"$2"* && $info == *"$STATE"* ]]
}

read_pid() { [[ -f $1 ]] && head -n 1 "$1" 2>/dev/null | tr -dc '0-9'; }

tcp_open() { # port
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
    else
        bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
    fi
}

# wait_ready NAME PID CHECK...: poll CHECK until it succeeds, for at most
# READY_TIMEOUT seconds; fail early if PID dies.
wait_ready() {
    local name=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        if "$@"; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            log_tail "$STATE/$name.log"
            die "$name exited during startup (see $STATE/$name.log)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$STATE/$name.log"
            die "$name did not answer within ${READY_TIMEOUT}s (see $STATE/$name.log)"
        fi
        sleep 0.2
    done
}

# kill_pid NAME PID: TERM, wait up to STOP_TIMEOUT seconds, then KILL.
kill_pid() {
    local name=$1 pid=$2 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_alive "$pid" "" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_alive "$pid" ""; then
        log "$name (pid $pid) still alive after ${STOP_TIMEOUT}s, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
}

# stop_by_pidfile NAME PATTERN
stop_by_pidfile() {
    local name=$1 pattern=$2 pidfile=$STATE/$1.pid pid
    pid=$(read_pid "$pidfile" || true)
    if [[ -n $pid ]] && pid_alive "$pid" "$pattern"; then
        log "stopping $name (pid $pid)"
        kill_pid "$name" "$pid"
    fi
    rm -f "$pidfile"
}

# launch NAME CMD...: start CMD in the background, in its own session, with
# its output in $STATE/NAME.log; record its PID in $STATE/NAME.pid.
# fd 9 (the state lock) is closed so that the server does not hold the lock.
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
    echo $! >"$STATE/$name.pid"
    LAUNCHED_PID=$!
}

ensure_port_free() { # name port envvar
    if tcp_open "$2"; then
        die "$1: port $HOST:$2 is already in use by a process this script did not start; stop it or set $3"
    fi
}

lock_state() {
    mkdir -p "$STATE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STATE/.lock"
        flock -w 600 9 || die "could not lock $STATE/.lock"
    fi
}

# --------------------------------------------------------------------- s3 --

install_s3s() {
    if [[ ! -x $S3S_BIN ]]; then
        command -v cargo >/dev/null 2>&1 || die "s3s-fs is missing at $S3S_BIN and cargo is not available to install it"
        log "installing s3s-fs $S3S_VERSION into $TOOLS/s3s (cargo install, this takes a while)"
        mkdir -p "$TOOLS/s3s"
        cargo install "s3s-fs@$S3S_VERSION" --locked --features binary --root "$TOOLS/s3s" >&2 \
            || die "cargo install s3s-fs@$S3S_VERSION failed"
    fi
    local v
    v=$("$S3S_BIN" --version 2>/dev/null || true)
    [[ $v == *" $S3S_VERSION" ]] || log "warning: $S3S_BIN reports '$v', expected $S3S_VERSION"
}

s3_healthy() {
    local pid
    pid=$(read_pid "$STATE/s3.pid" || true)
    [[ -n $pid ]] && pid_alive "$pid" s3s-fs && tcp_open "$S3_PORT"
}

s3_verify() {
    local url="http://$HOST:$S3_PORT/$S3_BUCKET?list-type=2" code rc
    # An unsigned request must be refused...
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
    [[ $code == 403 ]] || die "s3: an unsigned request got HTTP '$code' from $url, expected 403"
    # ...and a signed one accepted (needs curl >= 7.75 for --aws-sigv4).
    rc=0
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" --aws-sigv4 "aws:amz:$S3_REGION:s3" "$url") || rc=$?
    if [[ $rc == 2 ]]; then
        log "warning: curl has no --aws-sigv4, signed S3 request not checked"
    elif [[ $code != 200 ]]; then
        log_tail "$STATE/s3.log"
        die "s3: a signed ListObjectsV2 on bucket $S3_BUCKET got HTTP '$code', expected 200"
    fi
}

start_s3() {
    if s3_healthy; then
        log "s3 already running (pid $(read_pid "$STATE/s3.pid"), port $S3_PORT)"
        return
    fi
    stop_by_pidfile s3 s3s-fs # alive but not answering, or stale pidfile
    ensure_port_free s3 "$S3_PORT" NUAGE_S3_PORT
    mkdir -p "$STATE/s3/$S3_BUCKET"
    log "starting s3 (s3s-fs) on $HOST:$S3_PORT"
    launch s3 "$S3S_BIN" --host "$HOST" --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$STATE/s3"
    wait_ready s3 "$LAUNCHED_PID" tcp_open "$S3_PORT"
    s3_verify
}

# ---------------------------------------------------------------- azurite --

install_azurite() {
    if [[ ! -x $AZ_BIN ]]; then
        command -v npm >/dev/null 2>&1 || die "azurite is missing at $AZ_BIN and npm is not available to install it"
        log "installing azurite $AZURITE_VERSION into $TOOLS/azurite (npm)"
        mkdir -p "$TOOLS/azurite"
        npm install --prefix "$TOOLS/azurite" --save-exact --no-audit --no-fund "azurite@$AZURITE_VERSION" >&2 \
            || die "npm install azurite@$AZURITE_VERSION failed"
    fi
    command -v node >/dev/null 2>&1 || die "node is required to run azurite"
    local v
    v=$(node -p 'require(process.argv[1]).version' "$TOOLS/azurite/node_modules/azurite/package.json" 2>/dev/null || true)
    [[ $v == "$AZURITE_VERSION" ]] || log "warning: installed azurite is '$v', expected $AZURITE_VERSION"
}

az_healthy() {
    local pid
    pid=$(read_pid "$STATE/azurite.pid" || true)
    [[ -n $pid ]] && pid_alive "$pid" azurite-blob && tcp_open "$AZ_PORT"
}

# Create the container with a SharedKey-signed request (Azurite refuses
# anonymous ones). 201 Created and 409 ContainerAlreadyExists are success.
az_create_container() {
    AZ_HOST=$HOST AZ_PORT=$AZ_PORT AZ_ACCOUNT=$AZ_ACCOUNT AZ_KEY=$AZ_KEY AZ_CONTAINER=$AZ_CONTAINER \
        node -e '
const crypto = require("crypto"), http = require("http");
const e = process.env;
const path = `/${e.AZ_ACCOUNT}/${e.AZ_CONTAINER}`;
const xms = { "x-ms-date": new Date().toUTCString(), "x-ms-version": "2021-12-02" };
const stringToSign = [
  "PUT", "", "", "", "", "", "", "", "", "", "", "", // verb + 11 standard headers
  Object.keys(xms).sort().map((k) => `${k}:${xms[k]}`).join("\n"),
  `/${e.AZ_ACCOUNT}${path}\nrestype:container`,
].join("\n");
const sig = crypto.createHmac("sha256", Buffer.from(e.AZ_KEY, "base64"))
  .update(stringToSign, "utf8").digest("base64");
const req = http.request({
  host: e.AZ_HOST, port: Number(e.AZ_PORT), method: "PUT", path: `${path}?restype=container`,
  headers: { ...xms, "Content-Length": "0", Authorization: `SharedKey ${e.AZ_ACCOUNT}:${sig}` },
  timeout: 10000,
}, (res) => {
  let body = "";
  res.on("data", (c) => (body += c));
  res.on("end", () => {
    const code = res.headers["x-ms-error-code"] || "";
    if (res.statusCode === 201) { console.error(`container ${e.AZ_CONTAINER} created`); process.exit(0); }
    if (res.statusCode === 409 && code === "ContainerAlreadyExists") process.exit(0);
    console.error(`container creation failed: HTTP ${res.statusCode} ${code}\n${body}`);
    process.exit(1);
  });
});
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", (err) => { console.error(`container creation failed: ${err.message}`); process.exit(1); });
req.end();
' >&2 || die "azurite: could not create container $AZ_CONTAINER"
}

start_azurite() {
    if az_healthy; then
        log "azurite already running (pid $(read_pid "$STATE/azurite.pid"), port $AZ_PORT)"
        return
    fi
    stop_by_pidfile azurite azurite-blob
    ensure_port_free azurite "$AZ_PORT" NUAGE_AZURITE_PORT
    mkdir -p "$STATE/azurite"
    log "starting azurite (blob) on $HOST:$AZ_PORT"
    launch azurite "$AZ_BIN" --blobHost "$HOST" --blobPort "$AZ_PORT" \
        --location "$STATE/azurite" --silent --disableTelemetry --skipApiVersionCheck
    wait_ready azurite "$LAUNCHED_PID" tcp_open "$AZ_PORT"
    az_create_container
}

# --------------------------------------------------------------- postgres --

PG_BIN=
find_pg_bin() {
    local d cand
    if cand=$(command -v initdb 2>/dev/null); then
        d=$(dirname "$(readlink -f "$cand")")
        if [[ -x $d/pg_ctl && -x $d/postgres && -x $d/pg_isready && -x $d/psql ]]; then PG_BIN=$d; return 0; fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres && -x $d/pg_isready && -x $d/psql ]]; then PG_BIN=$d; return 0; fi
    done
    return 1
}

install_pg() {
    find_pg_bin && return 0
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL (initdb, pg_ctl) not found and apt-get is not available"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL not found; installing it needs root (or sudo)"
        sudo=(sudo)
    fi
    log "installing PostgreSQL with apt-get"
    "${sudo[@]}" apt-get update >&2 || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
        || die "apt-get install postgresql failed"
    find_pg_bin || die "PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
}

is_root() { [[ $(id -u) == 0 ]]; }

# as_pg CMD...: run CMD as the user owning the cluster (from a directory that
# user can read, to avoid "could not change directory" noise).
as_pg() {
    if is_root; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$PG_OS_USER" -- "$@")
        else
            (cd / && su -s /bin/sh -c 'exec "$0" "$@"' "$PG_OS_USER" -- "$@")
        fi
    else
        "$@"
    fi
}

pg_ready() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

pg_healthy() {
    local pid
    pid=$(read_pid "$STATE/postgres.pid" || true)
    [[ -n $pid ]] && pid_alive "$pid" postgres && pg_ready
}

pg_quote() { printf "'%s'" "${1//\'/\'\'}"; }

stop_pg() {
    if [[ -f $PG_DATA/postmaster.pid && -n $PG_BIN ]] \
        && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "stopping postgres (pg_ctl stop -m fast)"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1 \
            || log "pg_ctl stop failed, falling back to signals"
    fi
    stop_by_pidfile postgres postgres
}

start_pg() {
    if pg_healthy; then
        log "postgres already running (pid $(read_pid "$STATE/postgres.pid"), port $PG_PORT)"
        return
    fi
    stop_pg # our cluster, alive but not answering (or on another port), or stale pidfile
    ensure_port_free postgres "$PG_PORT" NUAGE_PG_PORT

    mkdir -p "$PG_DIR" "$PG_SOCK"
    touch "$STATE/postgres.log"
    if is_root; then
        id "$PG_OS_USER" >/dev/null 2>&1 || die "running as root but there is no '$PG_OS_USER' system user to run PostgreSQL"
        chown -R "$PG_OS_USER:" "$PG_DIR" "$STATE/postgres.log"
        as_pg test -w "$PG_DIR" \
            || die "user $PG_OS_USER cannot write to $PG_DIR (is a parent dir private?); set NUAGE_TEST_DIR elsewhere"
    fi
    chmod 700 "$PG_SOCK"

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "creating PostgreSQL cluster in $PG_DATA"
        rm -rf "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 --locale=C --no-sync \
            >>"$STATE/postgres.log" 2>&1 || { log_tail "$STATE/postgres.log"; die "initdb failed"; }
        printf "\ninclude_if_exists = 'nuage.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    fi
    # Rewritten on every start, so changing NUAGE_PG_PORT just works.
    {
        echo "# written by scripts/test-servers.sh"
        echo "listen_addresses = '$HOST'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = $(pg_quote "$PG_SOCK")"
        echo "max_connections = 200"
        echo "fsync = off               # test data only"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
    } | as_pg tee "$PG_DATA/nuage.conf" >/dev/null

    log "starting postgres on $HOST:$PG_PORT"
    # -W: do not wait, we poll ourselves; pg_ctl detaches the postmaster.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$STATE/postgres.log" -W start </dev/null >/dev/null 2>&1 9>&- \
        || { log_tail "$STATE/postgres.log"; die "pg_ctl start failed"; }
    wait_ready postgres "" pg_ready
    local pid
    pid=$(read_pid "$PG_DATA/postmaster.pid" || true)
    [[ -n $pid ]] || die "postgres answers but $PG_DATA/postmaster.pid has no PID"
    echo "$pid" >"$STATE/postgres.pid"

    local psql=("$PG_BIN/psql" -X -q -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1)
    if [[ $("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE $PG_DB" >&2 || die "could not create database $PG_DB"
        log "database $PG_DB created"
    fi
}

# ------------------------------------------------------------- subcommands --

cmd_env() {
    local kv
    for kv in \
        "NUAGE_TEST_S3_ENDPOINT=http://$HOST:$S3_PORT" \
        "NUAGE_TEST_S3_BUCKET=$S3_BUCKET" \
        "NUAGE_TEST_S3_REGION=$S3_REGION" \
        "NUAGE_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY" \
        "NUAGE_TEST_S3_SECRET_KEY=$S3_SECRET_KEY" \
        "NUAGE_TEST_AZBLOB_ENDPOINT=http://$HOST:$AZ_PORT/$AZ_ACCOUNT" \
        "NUAGE_TEST_AZBLOB_CONTAINER=$AZ_CONTAINER" \
        "NUAGE_TEST_AZBLOB_ACCOUNT_NAME=$AZ_ACCOUNT" \
        "NUAGE_TEST_AZBLOB_ACCOUNT_KEY=$AZ_KEY" \
        "NUAGE_TEST_PG_URL=postgres://$PG_USER@$HOST:$PG_PORT/$PG_DB" \
        "NUAGE_TEST_S3S_BIN=$S3S_BIN" \
        "NUAGE_TEST_AZURITE_BIN=$AZ_BIN"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

cmd_start() {
    command -v curl >/dev/null 2>&1 || die "curl is required"
    command -v ps >/dev/null 2>&1 || die "ps is required"
    lock_state
    install_s3s
    install_azurite
    install_pg
    start_s3
    start_azurite
    start_pg
    log "all servers ready (state in $STATE)"
    cmd_env
}

cmd_stop() {
    [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
    lock_state
    find_pg_bin || true
    stop_by_pidfile s3 s3s-fs
    stop_by_pidfile azurite azurite-blob
    stop_pg
    log "stopped"
}

status_line() { # name pattern port check...
    local name=$1 pattern=$2 port=$3 pid
    shift 3
    pid=$(read_pid "$STATE/$name.pid" || true)
    if [[ -n $pid ]] && pid_alive "$pid" "$pattern"; then
        if "$@"; then
            printf '%-9s running  pid %-7s port %s\n' "$name" "$pid" "$port"
        else
            printf '%-9s unhealthy  pid %s alive, port %s not answering\n' "$name" "$pid" "$port"
        fi
    else
        printf '%-9s stopped  port %s\n' "$name" "$port"
    fi
}

cmd_status() {
    find_pg_bin || true
    status_line s3 s3s-fs "$S3_PORT" tcp_open "$S3_PORT"
    status_line azurite azurite-blob "$AZ_PORT" tcp_open "$AZ_PORT"
    if [[ -n $PG_BIN ]]; then
        status_line postgres postgres "$PG_PORT" pg_ready
    else
        status_line postgres postgres "$PG_PORT" tcp_open "$PG_PORT"
    fi
}

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
    exit "${1:-2}"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
-h | --help | help) usage 0 ;;
*) usage 2 ;;
esac
