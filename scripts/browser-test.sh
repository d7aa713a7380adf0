#!/usr/bin/env bash
# browser-test.sh: a real browser opens share links of a normal and of an end-to-end bucket
# and must obtain exactly the original bytes (issue 4).
#
#   scripts/browser-test.sh [NUAGE_BINARY]
#
# Installs what is missing: Debian's chromium (apt, when root) and playwright-core (npm, in
# $NUAGE_TOOLS_DIR/playwright, default ~/.cache/nuage-tools). Runs `nuage serve` on SQLite +
# a local folder in a temporary directory on loopback, with a `nuage edge` in front of it,
# makes a PNG, uploads it to both buckets with the CLI, shares it, and runs
# tests/browser/share.mjs on the two links; the end-to-end page must read its chunks through
# the edge.
# Screenshots and the saved files stay in $NUAGE_ARTIFACTS (default ${TMPDIR:-/tmp}/nuage-artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."

NUAGE=${1:-${CARGO_TARGET_DIR:-target}/debug/nuage}
TOOLS=${NUAGE_TOOLS_DIR:-$HOME/.cache/nuage-tools}
PLAYWRIGHT_VERSION=1.65.1
ARTIFACTS=${NUAGE_ARTIFACTS:-${TMPDIR:-/tmp}/nuage-artifacts}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

log() { printf 'browser-test: %s\n' "$*" >&2; }
die() { printf 'browser-test: error: %s\n' "$*" >&2; exit 1; }

[[ -x $NUAGE ]] || die "no nuage binary at $NUAGE (cargo build -p nuage-cli first)"
command -v node >/dev/null || die "node is required"
if [[ ! -x $CHROMIUM ]]; then
    [[ $(id -u) == 0 ]] || die "$CHROMIUM is missing: apt-get install chromium"
    log "installing chromium (apt)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 \
        || die "apt-get install chromium failed"
fi
PW_DIR=$TOOLS/playwright/node_modules/playwright-core
if [[ ! -f $PW_DIR/package.json ]] || ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$PW_DIR/package.json"; then
    log "installing playwright-core $PLAYWRIGHT_VERSION into $TOOLS/playwright (npm)"
    mkdir -p "$TOOLS/playwright"
    npm install --prefix "$TOOLS/playwright" --save-exact --no-audit --no-fund \
        "playwright-core@$PLAYWRIGHT_VERSION" >&2 || die "npm install playwright-core failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nuage-browser.XXXXXX")
SERVER_PID=
EDGE_PID=
cleanup() {
    [[ -n $EDGE_PID ]] && kill "$EDGE_PID" 2>/dev/null && wait "$EDGE_PID" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$ARTIFACTS"

export NUAGE_CLIENT_CONFIG=$WORK/client.toml
unset NUAGE_SERVER NUAGE_TOKEN NUAGE_DATA_DIR NUAGE_DATABASE_URL NUAGE_PASSPHRASE NUAGE_KEY_FILE
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n' "$WORK" >"$WORK/nuage.toml"
nu() { "$NUAGE" --config "$WORK/nuage.toml" "$@"; }

mkfifo "$WORK/out"
# The binary itself, not the `nu` function: $! must be the server's pid for the cleanup.
EDGE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
EDGE=http://127.0.0.1:$EDGE_PORT
"$NUAGE" --config "$WORK/nuage.toml" serve --edge "$EDGE" >"$WORK/out" 2>"$WORK/serve.log" &
SERVER_PID=$!
exec 3<"$WORK/out"
URL=
while read -r -t 30 line <&3; do
    if [[ $line == "nuage serving on "* ]]; then URL=${line#nuage serving on }; break; fi
done
[[ -n $URL ]] || { cat "$WORK/serve.log" >&2; die "nuage serve did not start"; }
log "nuage serving on $URL"
"$NUAGE" edge --origin "$URL" --listen "127.0.0.1:$EDGE_PORT" --cache-dir "$WORK/edge" >/dev/null 2>"$WORK/edge.log" &
EDGE_PID=$!
for _ in $(seq 200); do curl -sf -o /dev/null "$EDGE/healthz" && break; sleep 0.05; done
curl -sf -o /dev/null "$EDGE/healthz" || { cat "$WORK/edge.log" >&2; die "nuage edge did not start"; }

echo 'browser test password' | nu admin account create alice --password-stdin >/dev/null
echo 'browser test password' | nu login --server "$URL" --account alice --password-stdin >/dev/null

# A 1200x900 PNG of coloured noise: about 3 MB, several chunks, and no two runs alike.
python3 - "$WORK/photo.png" <<'PY'
import os, struct, sys, zlib
w, h = 1200, 900
noise = os.urandom(w * h)
rows = bytearray()
for y in range(h):
    rows.append(0)
    for x in range(w):
        n = noise[y * w + x]
        rows += bytes((x * 255 // w, y * 255 // h, n))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(bytes(rows), 1)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY

nu bucket create photos >/dev/null
nu put "$WORK/photo.png" photos/ >/dev/null
NORMAL=$(nu share photos/photo.png 2>/dev/null)
NUAGE_KEY_FILE=$WORK/content.key nu key init >/dev/null
NUAGE_KEY_FILE=$WORK/content.key nu bucket create vault --e2e >/dev/null
NUAGE_KEY_FILE=$WORK/content.key nu put "$WORK/photo.png" vault/ >/dev/null
E2E=$(NUAGE_KEY_FILE=$WORK/content.key nu share vault/photo.png 2>/dev/null)
[[ $E2E == *"#k="* ]] || die "the end-to-end link has no key fragment: $E2E"
log "links: $NORMAL and ${E2E%%#*}#k=…"

PLAYWRIGHT_CORE_DIR=$PW_DIR CHROMIUM=$CHROMIUM \
    node tests/browser/share.mjs "$WORK/photo.png" "$ARTIFACTS" "normal=$NORMAL" "e2e=$E2E"
# The end-to-end page read the chunks through the edge (a normal link streams from the server).
# End-to-end chunks are stored uncompressed, so they weigh at least the file.
sent=$(curl -sf "$EDGE/metrics" | awk '$1 == "nuage_edge_sent_bytes_total" { print $2 }')
size=$(stat -c %s "$WORK/photo.png")
(( sent >= size )) || die "the edge sent $sent bytes, less than the file ($size): the page did not read through it"
log "the end-to-end page read $sent bytes of chunks through the edge"
log "screenshots: $ARTIFACTS/normal.png, $ARTIFACTS/e2e.png"
