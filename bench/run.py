"""`make bench`: run every benchmark in this folder, one after the other, in this interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# Benchmarks run with arguments of their own (the others with none): the saga bench once with one replica and
# the demo's orders per second beside it, once with two replicas; the demo bench runs inside the first.
RUNS: dict[str, list[list[str]]] = {
    "saga_bench.py": [["--demo"], ["--replicas", "2", "--rates", "200,300", "--seconds", "8"]],
    "demo_bench.py": [],
}


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("*_bench.py")):
        for args in RUNS.get(script.name, [[]]):
            print(f"\n=== {' '.join([script.name, *args])} ===", flush=True)
            if subprocess.run([sys.executable, str(script), *args], cwd=HERE.parent).returncode != 0:
                failed.append(" ".join([script.name, *args]))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
