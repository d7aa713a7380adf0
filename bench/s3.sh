#!/usr/bin/env bash
# The S3 endpoint against its peers, in one run, with one load driver for all
# (bench/nuage-bench/src/bin/s3-load.rs): `nuage serve`'s S3 endpoint (release build, SQLite
# and a local folder), Garage 2.5 (one node, its default engine, LMDB) and s3s-fs 0.14.1 (a
# folder behind s3s), all on loopback and on the same disk. For each: 4 KiB and 64 KiB PUT
# and GET with CONCURRENCY requests in flight (rate, p50, p99), one object of MIB MiB as a
# multipart PUT in 8 MiB parts and ranged GETs of 8 MiB (MB/s), a ListObjectsV2 walk of
# LIST_KEYS keys, and each server's peak RSS. Then the ratios nuage / Garage.
#
# Usage: bash bench/s3.sh [count of small objects=20000] [MIB=1024] [LIST_KEYS=100000]
# Needs garage (`cargo install garage --version 2.5.0 --locked`, looked for in
# $NUAGE_TOOLS_DIR/garage/bin, default ~/.cache/nuage-tools) and s3s-fs (installed by
# scripts/test-servers.sh into $NUAGE_TOOLS_DIR/s3s/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-20000}
MIB=${2:-1024}
LIST_KEYS=${3:-100000}
CONCURRENCY=${CONCURRENCY:-32}
TOOLS=${NUAGE_TOOLS_DIR:-$HOME/.cache/nuage-tools}
GARAGE=${GARAGE:-$TOOLS/garage/bin/garage}
S3S_FS=${S3S_FS:-$TOOLS/s3s/bin/s3s-fs}
[[ -x $GARAGE ]] || { echo "no garage at $GARAGE: cargo install garage --version 2.5.0 --locked --root $TOOLS/garage" >&2; exit 1; }
[[ -x $S3S_FS ]] || { echo "no s3s-fs at $S3S_FS: run scripts/test-servers.sh start once" >&2; exit 1; }
source bench/common.sh
bench_setup s3-bench
LOAD=$BIN/s3-load
unset NUAGE_DATABASE_URL NUAGE_S3_LISTEN AWS_CA_BUNDLE

rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# nuage: the embedded default with the S3 port on.
mkdir -p "$work/nuage"
printf 'listen = "127.0.0.1:18540"\ndata_dir = "%s/nuage"\n[s3]\nlisten = "127.0.0.1:18541"\n' "$work" >"$work/nuage.toml"
"$BIN/nuage" --config "$work/nuage.toml" serve >"$work/nuage.log" 2>&1 &
NUAGE_PID=$!
pids+=("$NUAGE_PID")
wait_port 18541
"$BIN/nuage" --config "$work/nuage.toml" admin account create bench >/dev/null
read -r NU_KEY NU_SECRET < <("$BIN/nuage" --config "$work/nuage.toml" --json admin key create bench \
    | python3 -c 'import json, sys; k = json.load(sys.stdin); print(k["id"], k["secret"])')

# Garage: one node, replication 1, its defaults otherwise.
mkdir -p "$work/garage"
cat >"$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:18542"
rpc_public_addr = "127.0.0.1:18542"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:18543"
root_domain = ".s3.garage.localhost"
EOF
g() { "$GARAGE" -c "$work/garage.toml" "$@"; }
"$GARAGE" -c "$work/garage.toml" server >"$work/garage.log" 2>&1 &
GARAGE_PID=$!
pids+=("$GARAGE_PID")
# Garage does not stop on SIGTERM alone within the cleanup's wait.
trap 'kill -9 "$GARAGE_PID" 2>/dev/null; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
wait_port 18543
for _ in $(seq 100); do node=$(g node id -q 2>/dev/null | cut -d@ -f1) && [[ -n $node ]] && break; sleep 0.1; done
g layout assign -z dc1 -c 20G "$node" >/dev/null
g layout apply --version 1 >/dev/null
g bucket create bench >/dev/null
keyinfo=$(g key create bench-key)
GA_KEY=$(awk '/Key ID/ {print $NF}' <<<"$keyinfo")
GA_SECRET=$(awk '/Secret key/ {print $NF}' <<<"$keyinfo")
g bucket allow --read --write --owner bench --key bench-key >/dev/null

# s3s-fs: a folder behind s3s.
mkdir -p "$work/s3s/bench"
"$S3S_FS" --host 127.0.0.1 --port 18544 --access-key benchkey --secret-key benchsecret "$work/s3s" >"$work/s3s.log" 2>&1 &
S3S_PID=$!
pids+=("$S3S_PID")
wait_port 18544

run() { # label endpoint key secret region load...
    local label=$1 endpoint=$2 key=$3 secret=$4 region=$5
    shift 5
    "$LOAD" --endpoint "$endpoint" --key "$key" --secret="$secret" --region "$region" --bucket bench \
        --label "$label" --concurrency "$CONCURRENCY" "$@"
}
run nuage http://127.0.0.1:18541 "$NU_KEY" "$NU_SECRET" us-east-1 mb
each() { # load...: one row per server, nuage first
    run nuage http://127.0.0.1:18541 "$NU_KEY" "$NU_SECRET" us-east-1 "$@"
    run "Garage 2.5" http://127.0.0.1:18543 "$GA_KEY" "$GA_SECRET" garage "$@"
    run "s3s-fs" http://127.0.0.1:18544 benchkey benchsecret us-east-1 "$@"
}

echo "# $(date -u +%F) on $(nproc) cores, $CONCURRENCY requests in flight; data under $work"
echo
echo "| server | size | PUT/s | PUT p50 ms | PUT p99 ms | GET/s | GET p50 ms | GET p99 ms |"
echo "|---|---|---|---|---|---|---|---|"
small4=$(each small --count "$COUNT" --size 4096)
echo "$small4"
small64=$(each small --count "$((COUNT / 4))" --size 65536)
echo "$small64"
echo
echo "| server | object | PUT MB/s | GET MB/s |"
echo "|---|---|---|---|"
big=$(each big --mib "$MIB")
echo "$big"
echo
echo "| server | listing | time | rate |"
echo "|---|---|---|---|"
list=$(each list --count "$LIST_KEYS")
echo "$list"
echo
echo "| server | peak RSS MiB |"
echo "|---|---|"
echo "| nuage | $(rss_mib "$NUAGE_PID") |"
echo "| Garage 2.5 | $(rss_mib "$GARAGE_PID") |"
echo "| s3s-fs | $(rss_mib "$S3S_PID") |"

# nuage / Garage, from the rows above (field n of the row of a server).
field() { grep "^| $2 |" <<<"$1" | awk -F'|' -v n="$3" '{gsub(/ /, "", $n); print $n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "| nuage / Garage | ratio |"
echo "|---|---|"
for row in "4 KiB:$small4" "64 KiB:$small64"; do
    size=${row%%:*}
    rows=${row#*:}
    echo "| $size PUT/s | $(ratio "$(field "$rows" nuage 4)" "$(field "$rows" "Garage 2.5" 4)") |"
    echo "| $size PUT p99 | $(ratio "$(field "$rows" nuage 6)" "$(field "$rows" "Garage 2.5" 6)") |"
    echo "| $size GET/s | $(ratio "$(field "$rows" nuage 7)" "$(field "$rows" "Garage 2.5" 7)") |"
    echo "| $size GET p99 | $(ratio "$(field "$rows" nuage 9)" "$(field "$rows" "Garage 2.5" 9)") |"
done
echo "| $MIB MiB PUT MB/s | $(ratio "$(field "$big" nuage 4)" "$(field "$big" "Garage 2.5" 4)") |"
echo "| $MIB MiB GET MB/s | $(ratio "$(field "$big" nuage 5)" "$(field "$big" "Garage 2.5" 5)") |"
nu_list=$(field "$list" nuage 4); ga_list=$(field "$list" "Garage 2.5" 4)
echo "| listing time | $(ratio "${nu_list%s}" "${ga_list%s}") |"
