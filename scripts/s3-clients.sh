#!/usr/bin/env bash
# s3-clients.sh: real S3 clients against `nuage serve`'s S3 endpoint on loopback (issue 16):
# the aws-cli (mb, cp up and down, sync, ls, rm, presign + curl, with its default checksum
# settings), a boto3 suite of each operation (tests/s3/test_boto3.py), rclone (copy, sync,
# check --checksum, with its multipart uploads) and restic's S3 backend (init, backup,
# check --read-data, restore, diff).
#
#   scripts/s3-clients.sh [NUAGE_BINARY]
#
# NUAGE_DATABASE_URL (e.g. a PostgreSQL database) is used when set, else SQLite. With
# NUAGE_S3_PROVIDER_S3 set, the server keeps its chunks on the S3 test server (NUAGE_TEST_S3_*,
# from scripts/test-servers.sh) instead of a local folder.
# NUAGE_S3_BIG_MB: the size of the file aws-cli sends and fetches in parts (default 1024). Installs
# what is missing: awscli and boto3 (with awscrt, which CRC32C needs) at pinned versions (pip, in a virtualenv under
# $NUAGE_TOOLS_DIR/s3-clients, default ~/.cache/nuage-tools), rclone and restic (Debian's
# packages, apt-get). Everything else lives in a
# temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

NUAGE=${1:-${CARGO_TARGET_DIR:-target}/debug/nuage}
TOOLS=${NUAGE_TOOLS_DIR:-$HOME/.cache/nuage-tools}
AWSCLI_VERSION=1.45.11
BOTO3_VERSION=1.43.11

log() { printf 's3-clients: %s\n' "$*" >&2; }
die() { printf 's3-clients: error: %s\n' "$*" >&2; exit 1; }

[[ -x $NUAGE ]] || die "no nuage binary at $NUAGE (cargo build -p nuage-cli first)"
VENV=$TOOLS/s3-clients
if ! "$VENV/bin/python" -c "import boto3, awscli, awscrt; assert boto3.__version__ == '$BOTO3_VERSION' and awscli.__version__ == '$AWSCLI_VERSION'" 2>/dev/null; then
    log "installing awscli $AWSCLI_VERSION and boto3 $BOTO3_VERSION into $VENV (pip)"
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed"
    "$VENV/bin/pip" install -q "awscli==$AWSCLI_VERSION" "boto3[crt]==$BOTO3_VERSION" >&2 || die "pip install failed"
fi
PY=$VENV/bin/python
AWS=$VENV/bin/aws
if ! command -v rclone >/dev/null || ! command -v restic >/dev/null; then
    log "installing rclone and restic (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone restic >&2 || die "apt-get install rclone restic failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nuage-s3.XXXXXX")
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

unset NUAGE_DATA_DIR NUAGE_LISTEN NUAGE_S3_LISTEN
# Loopback HTTP needs no CA bundle, and rclone's AWS SDK refuses its own transport when this
# is set ("LoadCustomCABundleError").
unset AWS_CA_BUNDLE
{
    printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n' "$WORK"
    [[ -n ${NUAGE_DATABASE_URL:-} ]] && printf 'database_url = "%s"\n' "$NUAGE_DATABASE_URL"
    printf '[s3]\nlisten = "127.0.0.1:0"\n'
    if [[ -n ${NUAGE_S3_PROVIDER_S3:-} ]]; then
        # The chunks on the S3 test server (s3s-fs, scripts/test-servers.sh), under a folder
        # of this run's own.
        : "${NUAGE_TEST_S3_ENDPOINT:?NUAGE_S3_PROVIDER_S3 needs the test servers (NUAGE_TEST_S3_*)}"
        printf '[[providers]]\nname = "s3"\nscheme = "s3"\nbucket = "%s"\nendpoint = "%s"\nregion = "%s"\n' \
            "$NUAGE_TEST_S3_BUCKET" "$NUAGE_TEST_S3_ENDPOINT" "$NUAGE_TEST_S3_REGION"
        printf 'access_key_id = "%s"\nsecret_access_key = "%s"\nroot = "s3-clients-%s/"\n' \
            "$NUAGE_TEST_S3_ACCESS_KEY" "$NUAGE_TEST_S3_SECRET_KEY" "$(basename "$WORK")"
    fi
} >"$WORK/nuage.toml"
unset NUAGE_DATABASE_URL
nu() { "$NUAGE" --config "$WORK/nuage.toml" "$@"; }

mkfifo "$WORK/out"
"$NUAGE" --config "$WORK/nuage.toml" serve >"$WORK/out" 2>"$WORK/serve.log" &
SERVER_PID=$!
exec 3<"$WORK/out"
ENDPOINT=
API=
while read -r -t 30 line <&3; do
    if [[ $line == "nuage serving on "* ]]; then API=${line#nuage serving on }; fi
    if [[ $line == "S3:"* ]]; then ENDPOINT=${line#S3: }; ENDPOINT=${ENDPOINT// /}; break; fi
done
[[ -n $ENDPOINT ]] || { cat "$WORK/serve.log" >&2; die "nuage serve did not start its S3 endpoint"; }
# Keep reading the server's output so that it never blocks on a full pipe.
cat <&3 >/dev/null &
log "S3 endpoint at $ENDPOINT"

echo 's3 test password' | nu admin account create alice --password-stdin >/dev/null
key() { nu --json admin key create alice "$@" | "$PY" -c 'import json, sys; k = json.load(sys.stdin); print(k["id"], k["secret"])'; }
read -r KEY SECRET < <(key --name full)
read -r RO_KEY RO_SECRET < <(key --name reader --read-only)
read -r SCOPED_KEY SCOPED_SECRET < <(key --name scoped --bucket only)

export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
aws() { "$AWS" --endpoint-url "$ENDPOINT" "$@"; }
# The transfer commands, without their progress lines.
s3q() { "$AWS" --endpoint-url "$ENDPOINT" s3 "$@" --only-show-errors; }

log "aws-cli $AWSCLI_VERSION: mb, cp, sync, ls, rm, presign"
aws s3 mb s3://cli >/dev/null
aws s3 mb s3://only >/dev/null
head -c 7000000 /dev/urandom >"$WORK/seven.bin"
s3q cp "$WORK/seven.bin" s3://cli/seven.bin
s3q cp s3://cli/seven.bin "$WORK/seven.back"
cmp "$WORK/seven.bin" "$WORK/seven.back" || die "aws s3 cp: the download differs"
mkdir -p "$WORK/folder/sub"
for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom >"$WORK/folder/f$i.bin"; done
for i in $(seq 1 10); do echo "note $i" >"$WORK/folder/sub/n$i.txt"; done
s3q sync "$WORK/folder" s3://cli/folder
s3q sync s3://cli/folder "$WORK/folder.back"
diff -r "$WORK/folder" "$WORK/folder.back" || die "aws s3 sync: the folders differ"
# A second sync has nothing to send.
[[ -z $(aws s3 sync "$WORK/folder" s3://cli/folder --dryrun) ]] || die "aws s3 sync sent unchanged files again"
listed=$(aws s3 ls s3://cli/folder/ --recursive | wc -l)
[[ $listed == 50 ]] || die "aws s3 ls --recursive listed $listed keys, not 50"
url=$(aws s3 presign s3://cli/seven.bin --expires-in 300)
curl -sf "$url" -o "$WORK/seven.curl" || die "curl of a presigned URL failed"
cmp "$WORK/seven.bin" "$WORK/seven.curl" || die "the presigned download differs"
# A big file goes in parts (aws-cli's default above 8 MiB: 8 MiB parts, 10 at a time); its
# ETag is the MD5 of the parts' MD5s, and nuage's own client fetches and checks it too.
BIG_MB=${NUAGE_S3_BIG_MB:-1024}
head -c $((BIG_MB << 20)) /dev/urandom >"$WORK/big.bin"
started=$SECONDS
s3q cp "$WORK/big.bin" s3://cli/big.bin
log "aws s3 cp of $BIG_MB MiB up: $((SECONDS - started)) s"
parts=$(( (BIG_MB + 7) / 8 ))
tag=$(aws s3api head-object --bucket cli --key big.bin --query ETag --output text)
[[ $tag == *"-$parts\"" || $tag == *"-$parts" ]] || die "the multipart ETag is $tag, not one of $parts parts"
started=$SECONDS
s3q cp s3://cli/big.bin "$WORK/big.back"
log "aws s3 cp of $BIG_MB MiB down: $((SECONDS - started)) s"
cmp "$WORK/big.bin" "$WORK/big.back" || die "aws s3 cp: the multipart download differs"
rm -f "$WORK/big.back"
export NUAGE_CLIENT_CONFIG=$WORK/client.toml NUAGE_CACHE_DIR=$WORK/cache
echo 's3 test password' | "$NUAGE" --server "$API" login --account alice --password-stdin >/dev/null
"$NUAGE" --server "$API" get cli/big.bin "$WORK/big.nuage" >/dev/null \
    || die "nuage get of a multipart object failed (its content hash of parts)"
cmp "$WORK/big.bin" "$WORK/big.nuage" || die "nuage get: the multipart download differs"
rm -f "$WORK/big.bin" "$WORK/big.nuage"
# The account's own keys, through /v1 with its token: made, used, listed, revoked.
read -r OWN_KEY OWN_SECRET < <("$NUAGE" --server "$API" --json access-key create --name mine --read-only \
    | "$PY" -c 'import json, sys; k = json.load(sys.stdin); print(k["id"], k["secret"])')
AWS_ACCESS_KEY_ID=$OWN_KEY AWS_SECRET_ACCESS_KEY=$OWN_SECRET aws s3 ls s3://cli/ >/dev/null \
    || die "a key made by nuage access-key create cannot list"
AWS_ACCESS_KEY_ID=$OWN_KEY AWS_SECRET_ACCESS_KEY=$OWN_SECRET aws s3 cp "$WORK/seven.bin" s3://cli/ro.bin >/dev/null 2>&1 \
    && die "a read-only key made by nuage access-key create could write"
"$NUAGE" --server "$API" access-key ls | grep -q "^$OWN_KEY"$'\t'"mine"$'\t'"every bucket, read-only"$'\t'"active$" \
    || die "nuage access-key ls does not show the new key"
"$NUAGE" --server "$API" access-key revoke "$OWN_KEY" >/dev/null
out=$(AWS_ACCESS_KEY_ID=$OWN_KEY AWS_SECRET_ACCESS_KEY=$OWN_SECRET aws s3 ls s3://cli/ 2>&1) \
    && die "a revoked key still lists"
[[ $out == *InvalidAccessKeyId* ]] || die "a revoked key is refused with: $out"
"$NUAGE" --server "$API" access-key revoke "$OWN_KEY" 2>/dev/null && die "a key was revoked twice"
s3q rm s3://cli/folder --recursive
[[ $(aws s3 ls s3://cli/folder/ --recursive | wc -l) == 0 ]] || die "aws s3 rm --recursive left keys"
status=$(curl -s -o /dev/null -w '%{http_code}' "$ENDPOINT/cli/seven.bin")
[[ $status == 403 ]] || die "an unsigned GET answered $status, not 403"

log "$(rclone version | head -1): copy, sync, check --checksum"
export RCLONE_CONFIG=$WORK/rclone.conf RCLONE_CONFIG_NU_TYPE=s3 RCLONE_CONFIG_NU_PROVIDER=Other \
    RCLONE_CONFIG_NU_ENDPOINT=$ENDPOINT RCLONE_CONFIG_NU_ACCESS_KEY_ID=$KEY \
    RCLONE_CONFIG_NU_SECRET_ACCESS_KEY=$SECRET RCLONE_CONFIG_NU_REGION=us-east-1
: >"$RCLONE_CONFIG"
rc() { rclone --retries 1 --low-level-retries 1 --s3-upload-cutoff 5M --s3-chunk-size 5M "$@"; }
# Above the cutoff rclone sends parts (and keeps the file's MD5 in metadata).
head -c 12000000 /dev/urandom >"$WORK/folder/sub/twelve.bin"
rc mkdir nu:rclone
rc copy --checksum "$WORK/folder" nu:rclone/folder
rc check --checksum "$WORK/folder" nu:rclone/folder || die "rclone check found differences after copy"
echo changed >"$WORK/folder/f1.bin"
rm "$WORK/folder/f2.bin"
rc sync --checksum "$WORK/folder" nu:rclone/folder
rc check --checksum "$WORK/folder" nu:rclone/folder || die "rclone check found differences after sync"
rc copy --checksum nu:rclone/folder "$WORK/folder.rclone"
diff -r "$WORK/folder" "$WORK/folder.rclone" || die "rclone: the folder fetched back differs"

log "$(restic version | cut -d' ' -f1-2): init, backup, check --read-data, restore"
export RESTIC_REPOSITORY=s3:$ENDPOINT/restic RESTIC_PASSWORD=restic-test-password
export RESTIC_CACHE_DIR=$WORK/restic-cache
restic init >/dev/null
restic backup --quiet "$WORK/folder" >/dev/null
restic check --read-data >/dev/null || die "restic check --read-data failed"
restic restore latest --target "$WORK/restored" >/dev/null
diff -r "$WORK/folder" "$WORK/restored$WORK/folder" || die "restic: the restored folder differs"

log "lifecycle: a rule dated in the past, applied by nuage admin lifecycle"
aws s3 mb s3://aging >/dev/null
echo old | s3q cp - s3://aging/old/x
echo new | s3q cp - s3://aging/new/y
today=$(date -u +%Y-%m-%dT00:00:00Z)
aws s3api put-bucket-lifecycle-configuration --bucket aging --lifecycle-configuration \
    '{"Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "old/"}, "Expiration": {"Date": "'"$today"'"}}]}'
[[ $(aws s3api get-bucket-lifecycle-configuration --bucket aging --query 'Rules[0].ID' --output text) == old ]] \
    || die "the lifecycle rule does not read back"
report=$(nu --json admin lifecycle)
[[ $("$PY" -c 'import json, sys; print(json.load(sys.stdin)["expired"])' <<<"$report") -ge 1 ]] \
    || die "nuage admin lifecycle expired nothing: $report"
aws s3api head-object --bucket aging --key old/x >/dev/null 2>&1 && die "an expired key still reads"
[[ $(aws s3 cp s3://aging/new/y -) == new ]] || die "a key outside the rule's prefix was touched"
[[ $(aws s3api list-object-versions --bucket aging --prefix old/ --query 'length(DeleteMarkers)') == 1 ]] \
    || die "the expired key has no delete marker over its version"

log "boto3 $BOTO3_VERSION: tests/s3/test_boto3.py"
NUAGE_API=$API NUAGE_ACCOUNT=alice NUAGE_PASSWORD="s3 test password" NUAGE_S3_ENDPOINT=$ENDPOINT NUAGE_S3_KEY=$KEY NUAGE_S3_SECRET=$SECRET \
    NUAGE_S3_RO_KEY=$RO_KEY NUAGE_S3_RO_SECRET=$RO_SECRET \
    NUAGE_S3_SCOPED_KEY=$SCOPED_KEY NUAGE_S3_SCOPED_SECRET=$SCOPED_SECRET NUAGE_S3_SCOPED_BUCKET=only \
    "$PY" -m unittest -v tests/s3/test_boto3.py || { tail -30 "$WORK/serve.log" >&2; die "the boto3 suite failed"; }
if [[ -n ${NUAGE_S3_PROVIDER_S3:-} ]]; then
    held=$(nu --json admin provider ls | "$PY" -c 'import json, sys; print(sum(p["placements"] for p in json.load(sys.stdin) if p["scheme"] == "s3"))')
    [[ $held -gt 100 ]] || die "the S3 provider holds $held placements: the chunks did not go there"
    log "the S3 provider holds $held placements"
fi
log "all S3 clients passed"
