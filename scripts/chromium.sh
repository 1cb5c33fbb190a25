#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed: the viewer's browser test drives it with playwright-core,
# which downloads no browser. The package index is refreshed only when the install fails without it.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } ||
    echo "could not install chromium: the browser test will fail" >&2
fi
chromium --version 2>/dev/null || true
