#!/usr/bin/env bash
# Unpack Envoy's generated protos (PyPI xds-protos, hash checked) into tools/xds-protos/, apart from the
# environment: tests/xds/test_wire_subset.py checks protos/controlplane/xds/v1/envoy_wire.proto against them.
# Only envoy/, xds/, udpa/, validate/ and cel/ are kept: the package's own google/ and opentelemetry/ copies
# would shadow googleapis-common-protos and the OpenTelemetry namespace package (the reason for the subset).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
dest="$root/tools/xds-protos"
version=1.85.0
sha256=e1e7bfd9936389936b2c85660d9db0dae380f12678a594b983da40dd472f1760
if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ]; then
  echo "xds-protos: $version ($dest)"; exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "xds-protos==$version --hash=sha256:$sha256" > "$tmp/requirements.txt"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  -r "$tmp/requirements.txt" -d "$tmp/wheel"
rm -rf "$dest" && mkdir -p "$dest"
"$python" - "$tmp/wheel" "$dest" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("xds_protos-*.whl"))
keep = ("envoy/", "xds/", "udpa/", "validate/", "cel/")
with zipfile.ZipFile(wheel) as archive:
    archive.extractall(sys.argv[2], [name for name in archive.namelist() if name.startswith(keep)])
PY
echo "$version" > "$dest/.version"
echo "xds-protos: $version unpacked into $dest"
