"""musicsweep installed from its wheel, as a user installs it, driving every backend that ships code.

One wheel is built from this checkout and installed into one fresh venv in a folder with no
pyproject.toml above it (from the warm uv cache, offline). From there, in user folders outside the
checkout: a launch to a real loopback sshd host with the default setup, a launch to the EC2
stand-in whose instance installs the wheel from the store, and `musicsweep init` with its example.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from musicsweep.contract import VERSION
from tests.fixtures.ec2 import EC2Project, make_sandbox
from tests.fixtures.sshd import SSHServer

pytestmark = pytest.mark.e2e  # builds a wheel and a fresh venv, and starts workers from it

REPO = Path(__file__).resolve().parents[1]
# Variables that would point the installed musicsweep at this checkout's venv, code or config.
LEAKY_ENV = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "MUSICSWEEP_CONFIG", "PYTHONPATH", "PYTHONHOME")


@dataclass(frozen=True)
class WheelInstall:
    wheel: Path
    venv: Path
    uv_cache: str  # the warm one: each test's XDG_CACHE_HOME is its own (conftest.calibration_cache)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def site(self) -> Path:
        return next((self.venv / "lib").glob("python3.*/site-packages"))

    def env(self, **extra: str) -> dict[str, str]:
        """A user's shell with the venv activated; no package index, no model hub."""
        env = {name: value for name, value in os.environ.items() if name not in LEAKY_ENV}
        return env | {"PATH": f"{self.bin}{os.pathsep}{env['PATH']}", "UV_OFFLINE": "1", "HF_HUB_OFFLINE": "1"} | extra

    def run(self, argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=540)

    def musicsweep(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return self.run([str(self.bin / "musicsweep"), *args], cwd, **env)


def uv(*args: str, cwd: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name not in LEAKY_ENV} | {"UV_OFFLINE": "1"}
    result = subprocess.run(["uv", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> WheelInstall:
    """`uv build --wheel`, then `uv venv` and `uv pip install` of the wheel's pinned worker deps and
    the wheel itself, offline, shared by every test here (they are the expensive part)."""
    root = tmp_path_factory.mktemp("wheel-install")
    assert not [p for p in (root, *root.parents) if (p / "pyproject.toml").exists()], "must be outside any project"
    subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(root / "dist"), str(REPO)], check=True, capture_output=True
    )
    wheel = next((root / "dist").glob("musicsweep-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        (root / "pylock.toml").write_bytes(archive.read("musicsweep/pylock.worker.toml"))
    uv_cache = subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    uv("venv", "--quiet", "--python", sys.executable, str(root / "venv"), cwd=root)
    python = str(root / "venv/bin/python")
    uv("pip", "install", "--quiet", "--python", python, "-r", "pylock.toml", cwd=root)
    uv("pip", "install", "--quiet", "--python", python, "--no-deps", str(wheel), cwd=root)
    return WheelInstall(wheel, root / "venv", uv_cache)


def package_files(site: Path) -> dict[str, str]:
    """sha256 of every file of the installed musicsweep package (no bytecode)."""
    package = site / "musicsweep"
    return {
        str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_version_names_the_wheel(installed: WheelInstall, tmp_path: Path) -> None:
    result = installed.musicsweep("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"musicsweep 0.1.0 from {installed.wheel.name}, installed in {installed.site}\n"


REBUILD = """
import sys
from pathlib import Path
from musicsweep.remote.packaging import build_wheel, export_pins
for folder in sys.argv[1:]:
    Path(folder).mkdir()
    print(build_wheel(Path(folder)), export_pins(Path(folder)))
"""


def test_rebuilt_wheel_is_valid_and_the_same_every_time(installed: WheelInstall, tmp_path: Path) -> None:
    """From the wheel install: RECORD's sha256 and size match every file, the files are the
    installed wheel's, and two rebuilds are byte-identical (the hosts' content-hash stamps)."""
    result = installed.run([str(installed.bin / "python"), "-c", REBUILD, "one", "two"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"one/{installed.wheel.name}", "True", f"two/{installed.wheel.name}", "True"]
    one, two = (tmp_path / folder / installed.wheel.name for folder in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    assert (tmp_path / "one/pylock.toml").read_bytes() == (tmp_path / "two/pylock.toml").read_bytes()
    with zipfile.ZipFile(one) as rebuilt, zipfile.ZipFile(installed.wheel) as built:
        assert sorted(rebuilt.namelist()) == sorted(built.namelist())
        record = rebuilt.read("musicsweep-0.1.0.dist-info/RECORD").decode().splitlines()
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("/RECORD"):
                continue
            data = rebuilt.read(name)
            assert data == built.read(name) and int(size) == len(data)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}"
        assert len(record) == len(rebuilt.namelist())


def test_ssh_host_gets_the_same_code_from_a_wheel_install(
    installed: WheelInstall, sshd_factory: Callable[[str], SSHServer]
) -> None:
    """Default setup (no `python`, no `setup`), host offline: 4 clips, the host runs the same files."""
    server = sshd_factory("127.0.0.2")
    project = server.folder.parent / "wheel-ssh-project"
    project.mkdir()
    host = server.entry(env=["PATH", "UV_OFFLINE", "HF_HUB_OFFLINE"])
    config = {"backend": "ssh", "store": "./runs", "sweeps_dir": "./runs", "backends": {"ssh": {"hosts": [host]}}}
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    dry = installed.musicsweep("launch", "sweep.prompts=[lofi]", "sweep.durations=[5]", "--dry-run", cwd=project)
    assert dry.returncode == 0, dry.stderr
    axes = ["sweep.prompts=[lofi,ambient pad]", "sweep.durations=[2]", "model=tiny"]
    launch = installed.musicsweep("launch", *axes, "sweep.seeds=[1,2]", "name=first", cwd=project)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    pull = installed.musicsweep("pull", "first", cwd=project)
    assert pull.returncode == 0, pull.stdout[-2000:] + pull.stderr[-2000:]
    assert len(list((project / "runs/first/audio").glob("*.wav"))) == 4
    host_venv = server.root / "remote/code/.venv"
    host_site = next((host_venv / "lib").glob("python3.*/site-packages"))
    assert (host_site / "musicsweep-0.1.0.dist-info").is_dir()
    assert package_files(host_site) == package_files(installed.site)
    setup_log = (server.root / "remote/setup.log").read_text()
    assert "trying the package index" not in setup_log

    again = installed.musicsweep("launch", *axes, "sweep.seeds=[3]", "name=second", cwd=project)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert installed.musicsweep("pull", "second", cwd=project).returncode == 0
    assert (server.root / "remote/setup.log").read_text() == setup_log, "the second launch reinstalled nothing"
    assert len(list((project / "runs/second/audio").glob("*.wav"))) == 2


def test_ec2_instance_installs_the_wheel_from_the_store(
    installed: WheelInstall, ec2_project: EC2Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher is the wheel install; the instance (the sandbox, with no MUSICSWEEP_EC2_PYTHON)
    fetches the wheel from the store and installs it and its pinned dependencies, offline."""
    name = ec2_project.sweep_name()
    axes = ["sweep.prompts=[warm rhodes,cold synth]", "sweep.durations=[2]", "model=tiny", f"name={name}", "--yes"]
    env = {"MUSICSWEEP_CONFIG": str(ec2_project.folder / "musicsweep.yaml")}
    launch = installed.musicsweep("launch", *axes, cwd=ec2_project.folder, **env)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    wheels = [key for key in ec2_project.s3_keys("_packages/") if key.endswith(".whl")]
    assert len(wheels) == 1 and wheels[0].endswith(f"/{installed.wheel.name}")
    [instance_id] = ec2_project.instance_ids(name)
    monkeypatch.setenv("PATH", installed.env()["PATH"])  # the instance's python3 has boto3, as AMIs with it do
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", installed.uv_cache)
    sandbox = make_sandbox(tmp_path / "instance-bin", python=None)
    assert sandbox.run(ec2_project.backend(), instance_id) == 0
    instance_venv = next((ec2_project.instance_root / name).glob("venv/lib/python3.*/site-packages"))
    assert package_files(instance_venv) == package_files(installed.site)
    pull = installed.musicsweep("pull", name, "--once", cwd=ec2_project.folder, **env)
    assert pull.returncode == 0, pull.stdout[-2000:] + pull.stderr[-2000:]
    assert len(list((ec2_project.folder / "runs" / name / "audio").glob("*.wav"))) == 2
    assert ec2_project.instance_ids(name) == [instance_id], "one instance, started once"


def test_init_then_the_example_is_a_first_sweep(installed: WheelInstall, tmp_path: Path) -> None:
    folder = tmp_path / "new-user"
    folder.mkdir()
    assert installed.musicsweep("init", cwd=folder).returncode == 0
    refused = installed.musicsweep("init", cwd=folder)
    assert (refused.returncode, refused.stderr) == (
        2,
        f"error: {folder / 'musicsweep.yaml'} already exists: musicsweep init overwrites nothing\n",
    )
    launch = installed.run([str(installed.bin / "python"), "sweep.py"], folder)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    pull = installed.musicsweep("pull", cwd=folder)
    assert pull.returncode == 0, pull.stdout[-2000:] + pull.stderr[-2000:]
    assert len(list((folder / "runs/first-sweep/audio").glob("*.wav"))) == 4
    listed = installed.musicsweep("list", cwd=folder).stdout.splitlines()
    assert listed[0].split() == ["NAME", "CREATED", "BACKEND", "CLIPS", "STATE", "PAID"]
    assert [row.split()[:1] + row.split()[3:] for row in listed[1:]] == [
        ["first-sweep", "local", "4/4", "finished", "$0.00"]
    ]


def test_a_worker_of_another_version_refuses_to_start(installed: WheelInstall, tmp_path: Path) -> None:
    result = installed.run(
        [str(installed.bin / "python"), "-m", "musicsweep.worker", str(tmp_path / "job.pkl")],
        tmp_path,
        **{VERSION: "0.0.9"},
    )
    assert result.returncode == 2
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].endswith(
        "error: this worker runs musicsweep 0.1.0 but the launch is musicsweep 0.0.9: refusing to start"
    )
    assert not (tmp_path / "job.pkl").exists() and list(tmp_path.iterdir()) == []
