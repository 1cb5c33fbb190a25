#!/usr/bin/env bash
# Set-up and run in one: `bash scripts/npm.sh start`, `bash scripts/npm.sh test`, … Puts Node 24 on
# PATH (fetched from the npm registry when the machine's node is older), installs the locked npm
# packages when they are missing or stale, provisions nats-server >= 2.12 (and, for `test`, Debian's
# Chromium for the viewer's browser test), then runs `npm "$@"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$(bash scripts/node.sh):$PATH"
export PATH
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/nats-server.sh >/dev/null
if [ "${1:-}" = test ]; then bash scripts/chromium.sh >/dev/null; fi
exec npm "$@"
