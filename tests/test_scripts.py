"""scripts/apt-install, which the README's test command uses: on a freshly booted VM
unattended-upgrades holds the apt and dpkg locks for minutes, and the test command must wait for
them instead of failing at once.

The real apt-get runs against the real locks; APT_CONFIG points it at an empty source list, so
`apt-get update` takes the lists lock but sends nothing over the network, and the package asked
for (bash) is already installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTS_LOCK = "/var/lib/apt/lists/lock"
DPKG_LOCK = "/var/lib/dpkg/lock-frontend"

# Holds the lists lock, then the dpkg frontend lock, as unattended-upgrades does, then lets go.
HOLDER = f"""
import fcntl, sys, time
with open({LISTS_LOCK!r}, "w") as lists:
    fcntl.lockf(lists, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
with open({DPKG_LOCK!r}, "w") as dpkg:
    fcntl.lockf(dpkg, fcntl.LOCK_EX)
    time.sleep(float(sys.argv[1]))
"""


@pytest.fixture
def offline_apt(tmp_path: Path) -> dict[str, str]:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs root and apt-get (CI runs as root on Debian)")
    config = tmp_path / "apt.conf"
    config.write_text(
        f'Dir::Etc::sourcelist "{tmp_path / "none.list"}";\n'
        f'Dir::Etc::sourceparts "{tmp_path / "no-parts"}";\n'
    )
    (tmp_path / "none.list").write_text("")
    (tmp_path / "no-parts").mkdir()
    return {**os.environ, "APT_CONFIG": str(config)}


def test_apt_install_waits_for_the_locks_another_process_holds(offline_apt: dict[str, str]) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = subprocess.run(["bash", str(ROOT / "scripts/apt-install"), "bash"], env=offline_apt,
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    assert "another process holds the apt lock; waiting" in result.stderr
    assert took >= 3.5  # it waited for the lists lock (and then for dpkg's) instead of failing


def test_apt_install_gives_up_after_apt_lock_timeout(offline_apt: dict[str, str]) -> None:
    with open(LISTS_LOCK, "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        result = subprocess.run(["bash", str(ROOT / "scripts/apt-install"), "bash"],
                                env={**offline_apt, "APT_LOCK_TIMEOUT": "2"}, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode != 0
    assert "Could not get lock" in result.stderr
