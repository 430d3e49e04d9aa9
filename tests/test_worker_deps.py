"""A launch whose workers could not import torch, transformers or soundfile fails before anything
is written, with one line naming the fix: on the local backend and on SSH hosts with `python:` set.

The interpreter without them is a bare venv (no site packages), so the test does not depend on
what the machine's own Python has installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from musicsweep.cli.run import run_sweep
from musicsweep.errors import MusicsweepError
from musicsweep.worker.deps import FIX, missing_modules
from tests.fixtures.sshd import SSHServer

VARIANTS = [{"prompt": "bare", "duration_s": 1, "model": "tiny", "seed": 1}]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter with only the standard library."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin/python")


def test_probe_names_each_missing_module(bare_python: str) -> None:
    assert missing_modules(bare_python) == ["torch", "transformers", "soundfile"]
    assert missing_modules(sys.executable) == []
    assert missing_modules() == []


def test_local_launch_without_worker_deps_writes_nothing(project: Path, bare_python: str) -> None:
    config = yaml.safe_load((project / "musicsweep.yaml").read_text())
    config["backends"]["local"]["python"] = bare_python
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(MusicsweepError) as caught:
        run_sweep(VARIANTS, name="bare")
    message = str(caught.value)
    assert message == (
        f"{project / 'musicsweep.yaml'}: key 'backends.local.python': worker dependencies missing for "
        f"{bare_python}: torch, transformers, soundfile; {FIX}"
    )
    assert "\n" not in message
    assert not (project / "runs").exists()


def test_script_prints_one_line_and_no_traceback(project: Path, bare_python: str) -> None:
    """The README's sweep-script pattern: the error is one line on stderr, exit status 1."""
    (project / "musicsweep.yaml").write_text(f"backend: local\nbackends:\n  local:\n    python: {bare_python}\n")
    script = project / "sweep.py"
    script.write_text(
        "import sys\nfrom musicsweep import MusicsweepError, run_sweep\n"
        f"try:\n    run_sweep({VARIANTS!r}, name='bare')\n"
        "except MusicsweepError as error:\n    sys.exit(f'error: {error}')\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(script)], cwd=project, capture_output=True, text=True, env={"PYTHONPATH": str(root)}
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {project / 'musicsweep.yaml'}: key 'backends.local.python': worker dependencies missing for "
        f"{bare_python}: torch, transformers, soundfile; {FIX}"
    ]
    assert not (project / "runs").exists()


def test_ssh_host_with_python_lacking_worker_deps(project: Path, ssh_hosts: list[SSHServer], bare_python: str) -> None:
    """Both hosts are named in one error, and no sweep folder is written."""
    hosts = [server.entry(python=bare_python) for server in ssh_hosts]
    config = {"backend": "ssh", "store": "./runs", "backends": {"ssh": {"hosts": hosts}}}
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(MusicsweepError) as caught:
        run_sweep(VARIANTS, name="bare-ssh")
    message = str(caught.value)
    for server in ssh_hosts:
        assert f"launch check on host {server.host().label} failed: worker dependencies missing for" in message
    assert message.count(f"{bare_python}: torch, transformers, soundfile; {FIX}") == 2
    assert "\n" not in message
    assert not (project / "runs").exists()
