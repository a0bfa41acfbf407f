"""A test run ended by SIGTERM stops the processes its fixtures started (tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import running, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_tears_fixtures_down_and_their_processes_stop(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    (tmp_path / "test_victim.py").write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        from pathlib import Path
        import pytest

        @pytest.fixture
        def child():
            process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            Path({str(pid_file)!r}).write_text(str(process.pid))
            yield process
            process.kill()
            process.wait()

        def test_waits(child):
            time.sleep(600)
    """))
    # The project's conftest (with its SIGTERM handler) is loaded as it is for every test run.
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                            "-c", str(ROOT / "pyproject.toml"), "--confcutdir", str(ROOT / "tests"),
                            "-p", "tests.conftest", str(tmp_path / "test_victim.py")],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=60, what="the fixture's child to start")
        child = int(pid_file.read_text())
        assert running(child)
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
        assert not running(child), f"the fixture's child {child} outlived the run:\n{output}"
        assert run.returncode != 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if pid_file.exists() and running(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
