""".ci/system-packages: without root it installs nothing and stops at once with the exact command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT, UNIT


def test_a_user_without_root_gets_the_exact_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")  # not root
    (bin_dir / "id").chmod(0o755)
    bash = shutil.which("bash")
    assert bash is not None
    # Only bash and the fake id on PATH: redis-server, chromium and tcpdump are "missing" whatever is installed.
    done = subprocess.run(
        [bash, str(ROOT / ".ci/system-packages")],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
        check=False,
    )
    assert done.returncode == 1
    assert "missing: redis-server chromium tcpdump" in done.stderr
    assert "apt-get install -y --no-install-recommends redis-server chromium tcpdump" in done.stderr
    assert done.stdout == ""  # nothing was installed
