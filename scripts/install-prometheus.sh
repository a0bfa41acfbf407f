#!/usr/bin/env bash
# Provide a Prometheus server binary at tools/bin/prometheus (for `make up` and the scrape test).
#
# Order of preference: PROMETHEUS_BIN; one provisioned earlier; Debian bullseye's `prometheus` package,
# fetched through a private apt configuration with signatures checked (scripts/lib/bullseye-package.sh)
# and unpacked into tools/ (nothing is installed on the machine).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/tools"
bin="$tools/bin"
mkdir -p "$bin"

report() { echo "prometheus: $("$1" --version 2>&1 | head -n 1) ($1)"; }

if [ -n "${PROMETHEUS_BIN:-}" ] && [ -x "${PROMETHEUS_BIN}" ]; then report "$PROMETHEUS_BIN"; exit 0; fi
if [ -x "$bin/prometheus" ]; then report "$bin/prometheus"; exit 0; fi

fail() {
  cat >&2 <<MSG
prometheus: could not be provisioned: $*
Install a Prometheus 2.x server binary by hand and set PROMETHEUS_BIN=/path/to/prometheus, then run
'make deps' again. The scrape test needs a real Prometheus server.
MSG
  exit 1
}

. "$root/scripts/lib/bullseye-package.sh"
extract="$tools/apt/extract-prometheus"
fetch_bullseye_package prometheus "$extract"
install -m 0755 "$extract/usr/bin/prometheus" "$bin/prometheus"
report "$bin/prometheus"
