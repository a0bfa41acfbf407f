#!/usr/bin/env bash
# Provide a Consul binary at tools/bin/consul.
#
# Order of preference: a consul already on PATH; one provisioned earlier; Debian bullseye's
# package, fetched through a private apt configuration with signatures checked
# (scripts/lib/bullseye-package.sh).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/tools"
bin="$tools/bin"
mkdir -p "$bin"

report() { echo "consul: $("$1" version | head -n 1) ($1)"; }

if [ -n "${CONSUL_BIN:-}" ] && [ -x "${CONSUL_BIN}" ]; then report "$CONSUL_BIN"; exit 0; fi
if on_path="$(command -v consul 2>/dev/null)"; then
  ln -sf "$on_path" "$bin/consul"; report "$on_path"; exit 0
fi
if [ -x "$bin/consul" ]; then report "$bin/consul"; exit 0; fi

fail() {
  cat >&2 <<MSG
consul: could not be provisioned: $*
Install Consul by hand (any 1.8+ binary) and put it on PATH, or set CONSUL_BIN=/path/to/consul,
then run 'make deps' again. The tests need a real Consul agent and will not run without one.
MSG
  exit 1
}

. "$root/scripts/lib/bullseye-package.sh"
extract="$tools/apt/extract"
fetch_bullseye_package consul "$extract"
install -m 0755 "$extract/usr/bin/consul" "$bin/consul"
report "$bin/consul"
