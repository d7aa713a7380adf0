#!/usr/bin/env bash
# openapi-check.sh: validates the OpenAPI document of the HTTP API (`nuage openapi`, the
# document `GET /v1/openapi.json` serves) against the OpenAPI 3.1 schema and its rules
# (parameters resolved, operation ids unique...) with the `openapi-spec-validator` package.
#
#   scripts/openapi-check.sh [NUAGE_BINARY]
#
# Installs the validator when missing, in a virtualenv under $NUAGE_TOOLS_DIR (default
# ~/.cache/nuage-tools), from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

NUAGE=${1:-${CARGO_TARGET_DIR:-target}/debug/nuage}
TOOLS=${NUAGE_TOOLS_DIR:-$HOME/.cache/nuage-tools}
VERSION=0.9.0
VENV=$TOOLS/openapi-venv

die() { printf 'openapi-check: error: %s\n' "$*" >&2; exit 1; }

[[ -x $NUAGE ]] || die "no nuage binary at $NUAGE (cargo build -p nuage-cli first)"
if [[ ! -x $VENV/bin/openapi-spec-validator ]] \
    || [[ $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("openapi-spec-validator"))' 2>/dev/null) != "$VERSION" ]]; then
    printf 'openapi-check: installing openapi-spec-validator %s into %s (pip)\n' "$VERSION" "$VENV" >&2
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install -q "openapi-spec-validator==$VERSION" >&2 || die "pip install failed"
fi
doc=$(mktemp "${TMPDIR:-/tmp}/nuage-openapi.XXXXXX.json")
trap 'rm -f "$doc"' EXIT
"$NUAGE" openapi >"$doc"
"$VENV/bin/openapi-spec-validator" "$doc"
