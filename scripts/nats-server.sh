#!/usr/bin/env bash
# Prints the path of a nats-server binary of version 2.12 or newer (DESIGN.md section 7: pinned
# priority groups, message schedules, per-message TTL).
# Looks on PATH, then in the project cache (.cache/nats-server); otherwise downloads the
# nats-server package of Debian testing (forky, 2.15) with apt's own machinery (using the mirror
# from this machine's apt sources, nothing written to the system) and unpacks the binary into the
# cache, replacing an older one there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/nats-server"
MIN_MINOR=12
SUITE=forky

version_ok() { # $1 = binary; true when it reports 2.MIN_MINOR or newer
  local v
  v="$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)" || return 1
  [ -n "$v" ] || return 1
  local major minor
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge "$MIN_MINOR" ]; }
}

for candidate in "$(command -v nats-server || true)" "$CACHE/nats-server"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && version_ok "$candidate"; then
    echo "$candidate"; exit 0
  fi
done

echo "nats-server >= 2.$MIN_MINOR not found; fetching Debian $SUITE's package into $CACHE" >&2
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/parts" "$TMP/lists/partial" "$TMP/cache/archives/partial" "$CACHE"

# The machine's own main Debian source (deb822 or one-line format), re-pointed at $SUITE.
SRC="$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)"
if [ -n "$SRC" ]; then
  awk 'BEGIN{RS="";ORS="\n\n"} !/security/ && /Types:.*deb/ {print; exit}' "$SRC" \
    | sed -E "s/^Suites:.*/Suites: $SUITE/" > "$TMP/parts/$SUITE.sources"
else
  grep -E '^deb ' /etc/apt/sources.list | grep -v security | head -1 \
    | awk -v suite="$SUITE" '{print $1, $2, suite, "main"}' > "$TMP/parts/$SUITE.list"
fi

APT_OPTS=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$TMP/parts"
  -o "Dir::State::Lists=$TMP/lists" -o "Dir::Cache=$TMP/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${APT_OPTS[@]}" -qq update >&2
( cd "$TMP" && apt-get "${APT_OPTS[@]}" -qq download nats-server >&2 )
dpkg -x "$TMP"/nats-server_*.deb "$TMP/root"
install -m 0755 "$(find "$TMP/root" -type f -name nats-server -perm -u+x | head -1)" "$CACHE/nats-server"
version_ok "$CACHE/nats-server" || { echo "fetched nats-server is older than 2.$MIN_MINOR" >&2; exit 1; }
echo "$CACHE/nats-server"
