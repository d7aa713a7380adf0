#!/usr/bin/env bash
# An edge cache against nginx with proxy_cache (bench/nginx-proxy-cache.conf, in front of an
# nginx origin serving the same chunk files), on loopback, release build, in one run:
#  1. cache hits: 200 distinct warm keys, 64 connections, wrk (bench/edge-load.lua), for
#     64 KiB and 1 MiB chunks: requests/s, MB/s, p99 latency, and the ratio to nginx;
#  2. cold misses: keys never asked before, each once, 64 in flight (nuage-bench fetch-once,
#     which checks every body against its address): the edge fetching from the S3 server
#     (a private s3s-fs), nginx from its origin.
# The chunks are uploaded with `nuage put` to a server whose only provider is that S3
# server; the grants come from the server's manifests.
# Usage: bash bench/edge-vs-nginx.sh [seconds per wrk run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
ROUNDS=${2:-2}
WARM=200
COLD64=1800
COLD1M=400
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/nuage-bench-target}"
cargo build --release -q -p nuage-cli -p nuage-bench
BIN=$CARGO_TARGET_DIR/release
S3S=${NUAGE_TEST_S3S_BIN:-$HOME/.cache/nuage-tools/s3s/bin/s3s-fs}
[ -x "$S3S" ] || { echo "s3s-fs missing at $S3S: run scripts/test-servers.sh start once" >&2; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nuage-edge-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export NUAGE_CLIENT_CONFIG=$work/client.toml NUAGE_CACHE_DIR=$work/client-cache
unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_CONFIG NUAGE_DATABASE_URL NUAGE_REGION
S3_PORT=19514 SERVER_PORT=18430 EDGE_PORT=18431 ORIGIN_PORT=18082 CACHE_PORT=18083

wait_http() { # URL LOG
    for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
    echo "no answer at $1" >&2; cat "$2" >&2; exit 1
}
metric() { curl -sf "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }

echo "# $(date -u +%F) on $(nproc) cores; wrk ${SECS}s x $ROUNDS rounds; data under $work"

# The S3 server and a link server storing on it; chunks cut at 1-8 MiB, not compressed, so
# a 64 KiB or 1 MiB random file is one chunk of that size (+ 36 bytes of header).
mkdir -p "$work/s3/bench" "$work/nginx-tmp" "$work/nginx-cache"
"$S3S" --host 127.0.0.1 --port $S3_PORT --access-key bench-ak --secret-key bench-secret-key "$work/s3" \
    >"$work/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null && break; sleep 0.05; done
providers="[[providers]]
name = \"s3\"
scheme = \"s3\"
bucket = \"bench\"
endpoint = \"http://127.0.0.1:$S3_PORT\"
access_key_id = \"bench-ak\"
secret_access_key = \"bench-secret-key\""
cat >"$work/server.toml" <<EOF
listen = "127.0.0.1:$SERVER_PORT"
data_dir = "$work/server"
[chunking]
min_size = 1048576
avg_size = 4194304
max_size = 8388608
zstd_level = 0
$providers
EOF
"$BIN/nuage" --config "$work/server.toml" serve --edge "http://127.0.0.1:$EDGE_PORT=bench" >"$work/server.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$SERVER_PORT/healthz" "$work/server.log"
TOKEN=$("$BIN/nuage" --config "$work/server.toml" --json admin account create bench | jq -r .token)
"$BIN/nuage" --server "http://127.0.0.1:$SERVER_PORT" login --with-token "$TOKEN" >/dev/null
"$BIN/nuage" bucket create chunks >/dev/null

# The data: 64 KiB and 1 MiB random files, uploaded; then one grant per chunk.
python3 - "$work" $((WARM + COLD64)) $((WARM + COLD1M)) <<'EOF'
import os, sys
work, n64, n1m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, n, size in (("k64", n64, 65536), ("k1m", n1m, 1 << 20)):
    os.makedirs(f"{work}/src/{name}")
    for i in range(n):
        with open(f"{work}/src/{name}/{i:05d}", "wb") as f:
            f.write(os.urandom(size))
EOF
t0=$(date +%s.%N)
"$BIN/nuage" --json put "$work/src/k64" chunks/k64 >/dev/null
"$BIN/nuage" --json put "$work/src/k1m" chunks/k1m >/dev/null
echo "# uploaded $((2 * WARM + COLD64 + COLD1M)) files in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
python3 - "http://127.0.0.1:$SERVER_PORT" "$TOKEN" "$work" $WARM <<'EOF'
import http.client, json, sys, urllib.parse
base, token, work, warm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
def get(path):
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body)
    return json.loads(body)
for name in ("k64", "k1m"):
    keys, page_token = [], ""
    while True:
        page = get(f"/v1/buckets/chunks/objects?prefix={name}/&limit=1000"
                   + (f"&page_token={urllib.parse.quote(page_token)}" if page_token else ""))
        keys += [o["key"] for o in page["objects"]]
        if not page.get("next_page_token"):
            break
        page_token = page["next_page_token"]
    lines = []
    for k in sorted(keys):
        grants = get(f"/v1/buckets/chunks/manifests/{urllib.parse.quote(k)}")["grants"]
        assert len(grants) == 1, (k, len(grants))
        lines += [f"{a} {g}" for a, g in grants.items()]
    with open(f"{work}/{name}-warm.keys", "w") as f:
        f.write("\n".join(lines[:warm]) + "\n")
    with open(f"{work}/{name}-cold.keys", "w") as f:
        f.write("\n".join(lines[warm:]) + "\n")
    print(f"# {name}: {len(lines[:warm])} warm keys, {len(lines[warm:])} cold keys")
EOF

# The edge (reading the S3 server directly) and nginx (origin: the S3 server's files).
cat >"$work/edge.toml" <<EOF
origin = "http://127.0.0.1:$SERVER_PORT"
listen = "127.0.0.1:$EDGE_PORT"
cache_dir = "$work/edge-cache"
cache_size = "10GiB"
memory = "2GiB"
region = "bench"
$providers
EOF
env ${EDGE_ENV:-} "$BIN/nuage" --config "$work/edge.toml" edge >"$work/edge.log" 2>&1 &
EDGE_PID=$!
pids+=($EDGE_PID)
wait_http "http://127.0.0.1:$EDGE_PORT/healthz" "$work/edge.log"
chmod -R a+rX "$work"   # nginx workers run as nobody
sed -e "s#@ROOT@#$work#g" -e "s#@CHUNKS@#$work/s3/bench#g" -e "s#@ORIGIN@#$ORIGIN_PORT#g" \
    -e "s#@CACHE@#$CACHE_PORT#g" bench/nginx-proxy-cache.conf >"$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$CACHE_PORT) 2>/dev/null && break; sleep 0.05; done
EDGE=http://127.0.0.1:$EDGE_PORT NGINX=http://127.0.0.1:$CACHE_PORT

# 2 first (the cold keys are cold only once), then 1.
echo
echo "| cold misses, each key once, 64 in flight | requests/s | MB/s | p50 ms | p99 ms | requests |"
echo "|---|---|---|---|---|---|"
for size in k64 k1m; do
    "$BIN/fetch-once" --url "$EDGE" --target edge --keys "$work/$size-cold.keys" --label "edge ← S3 server, $size"
    "$BIN/fetch-once" --url "$NGINX" --target nginx --keys "$work/$size-cold.keys" --label "nginx proxy_cache ← nginx origin, $size"
done
echo "# edge fetches from the providers: $(metric "$EDGE" 'nuage_edge_fetches_total{source="providers"}'), from the origin: $(metric "$EDGE" 'nuage_edge_fetches_total{source="origin"}')"

# Warm both caches with the hit keys (and check them), then wrk.
for size in k64 k1m; do
    "$BIN/fetch-once" --url "$EDGE" --target edge --keys "$work/$size-warm.keys" --label warm >/dev/null
    "$BIN/fetch-once" --url "$NGINX" --target nginx --keys "$work/$size-warm.keys" --label warm >/dev/null
done
fetched=$(metric "$EDGE" 'nuage_edge_fetches_total{source="providers"}')

# wrk's figures: requests/s, MB/s (its Transfer/sec, converted), p99 in ms.
run_wrk() {
    local url=$1 target=$2 keys=$3 out
    out=$(wrk -t2 -c64 -d"${SECS}s" --latency -s bench/edge-load.lua "$url" -- "$keys" "$target" 2)
    if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "wrk: errors from $target" >&2; exit 1; fi
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        function mb(v) { if (v ~ /GB$/) return v * 1073.741824; if (v ~ /MB$/) return v * 1.048576; if (v ~ /KB$/) return v / 976.5625; return v / 1e6 }
        /Requests\/sec/ { rps = $2 }
        /Transfer\/sec/ { t = mb($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.0f %.2f\n", rps, t, p99 }' <<<"$out"
}
echo
echo "| cache hits, 200 warm keys, 64 connections | edge req/s | nginx req/s | ratio | edge MB/s | nginx MB/s | edge p99 ms | nginx p99 ms |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
    for size in k64 k1m; do
        read -r e_rps e_mbs e_p99 < <(run_wrk "$EDGE" edge "$work/$size-warm.keys")
        read -r n_rps n_mbs n_p99 < <(run_wrk "$NGINX" nginx "$work/$size-warm.keys")
        ratio=$(awk -v a="$e_rps" -v b="$n_rps" 'BEGIN { printf "%.2f", a / b }')
        echo "| $size, round $round | $e_rps | $n_rps | $ratio | $e_mbs | $n_mbs | $e_p99 | $n_p99 |"
    done
done
after=$(metric "$EDGE" 'nuage_edge_fetches_total{source="providers"}')
echo "# edge fetches during the hit runs: $((after - fetched)); memory hits: $(metric "$EDGE" 'nuage_edge_hits_total{tier="memory"}'); edge RSS $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' /proc/$EDGE_PID/status)"
