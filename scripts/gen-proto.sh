#!/usr/bin/env bash
# Generate Python messages, gRPC stubs and .pyi stubs from protos/ with grpcio-tools and mypy-protobuf.
#   scripts/gen-proto.sh OUT_DIR                  write into OUT_DIR (replacing it)
#   scripts/gen-proto.sh OUT_DIR --compare DIR    generate into OUT_DIR, fail if it differs from DIR
# The output depends only on the protos and the pinned grpcio-tools, so it regenerates byte for byte.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="$1"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mapfile -t files < <(cd protos && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
# Typed stubs for the gRPC modules too (mypy-protobuf's plugin), so a user's type checker sees the stubs'
# and servicers' signatures instead of Any.
"$python" -m grpc_tools.protoc -I protos \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$python")/protoc-gen-mypy_grpc" \
  --python_out="$tmp" --grpc_python_out="$tmp" --pyi_out="$tmp" --mypy_grpc_out="$tmp" "${files[@]}"
# Every generated directory is a regular package, so setuptools and type checkers see it.
find "$tmp" -mindepth 1 -type d -exec sh -c 'for d; do : > "$d/__init__.py"; done' _ {} +
rm -rf "$out" && mkdir -p "$(dirname "$out")" && cp -r "$tmp" "$out"
if [ "${2:-}" = "--compare" ]; then
  if ! diff -r -x __pycache__ "$out" "$3" >/dev/null; then
    diff -r -x __pycache__ "$out" "$3" | head -n 40 >&2
    echo "proto: $3 is out of date with protos/: run 'make proto' and commit the result" >&2
    exit 1
  fi
  echo "proto: $3 matches protos/"
else
  echo "proto: generated $(find "$out" -name '*_pb2*.py' | wc -l) modules from ${#files[@]} protos into $out/"
fi
