#!/usr/bin/env bash
# Provide a Consul binary at tools/bin/consul.
#
# Order of preference: a consul already on PATH; one provisioned earlier; Debian bullseye's
# package, fetched through a private apt configuration (own sources list, lists and cache)
# that points at the Debian mirror this machine's apt sources already name, with signature
# checks kept on against the machine's Debian archive keyring.
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

# The mirror and keyring this machine's own apt sources use.
sources="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
mirror="$(printf '%s\n' "$sources" | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ')"
mirror="${mirror%/}"
[ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list*"
keyring="/usr/share/keyrings/debian-archive-keyring.gpg"
[ -r "$keyring" ] || fail "Debian archive keyring $keyring not found"
command -v apt-get >/dev/null || fail "apt-get not found (not a Debian-family machine)"

apt_dir="$tools/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/preferences.d" "$apt_dir/dl"
echo "deb [signed-by=$keyring] $mirror bullseye main" > "$apt_dir/etc/sources.list"
: > "$apt_dir/status"
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d"
  -o "Dir::State::lists=$apt_dir/lists"
  -o "Dir::State::status=$apt_dir/status"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Get::List-Cleanup=0"
  -o "APT::Sandbox::User=root"
)
echo "consul: fetching Debian bullseye's package from $mirror (signatures checked against $keyring)"
apt-get "${apt_opts[@]}" update -qq || fail "apt-get update of the private bullseye list failed"
(cd "$apt_dir/dl" && rm -f consul_*.deb && apt-get "${apt_opts[@]}" download consul) \
  || fail "apt-get download consul failed"
deb="$(ls "$apt_dir"/dl/consul_*.deb | head -n 1)"
extract="$apt_dir/extract"
rm -rf "$extract" && dpkg -x "$deb" "$extract"
install -m 0755 "$extract/usr/bin/consul" "$bin/consul"
report "$bin/consul"
