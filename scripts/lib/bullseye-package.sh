# Sourced by scripts/install-*.sh: fetch one package from Debian bullseye through a private apt
# configuration (own sources list, lists and cache) that points at the Debian mirror this machine's apt
# sources already name, with signature checks kept on against the machine's Debian archive keyring.
#   fetch_bullseye_package NAME EXTRACT_DIR    (calls `fail MESSAGE`, which the caller defines)
fetch_bullseye_package() {
  local name="$1" extract="$2"
  local sources mirror keyring apt_dir deb
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
  local apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d"
    -o "Dir::State::lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Get::List-Cleanup=0"
    -o "APT::Sandbox::User=root"
  )
  echo "$name: fetching Debian bullseye's package from $mirror (signatures checked against $keyring)"
  apt-get "${apt_opts[@]}" update -qq || fail "apt-get update of the private bullseye list failed"
  (cd "$apt_dir/dl" && rm -f "${name}"_*.deb && apt-get "${apt_opts[@]}" download "$name") \
    || fail "apt-get download $name failed"
  deb="$(ls "$apt_dir"/dl/"${name}"_*.deb | head -n 1)"
  rm -rf "$extract" && dpkg -x "$deb" "$extract"
}
