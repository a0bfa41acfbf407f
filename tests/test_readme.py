"""The README's interceptor example runs as a standalone script."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_readme_interceptor_example_runs_as_a_standalone_script(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use the interceptors in your own gRPC app", 1)[1]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "example.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "CONTROLPLANE_TRACE_DIR"}  # as on a laptop: the default
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^hello world - trace id: [0-9a-f]{32}$", done.stdout, re.M), done.stdout
    assert (tmp_path / ".traces" / "example.jsonl").stat().st_size > 0
