"""`musicsweep doctor` against the real parts: every problem named in one run, exit 0 only when
all pass, and `--fix` doing only its safe fixes.

Real parts: loopback sshd hosts, the single-node SLURM cluster, moto and its IAM/EC2 API, the
RunPod GraphQL stand-in. HOME is a temporary folder, so known_hosts and AWS files are the test's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from musicsweep.cli.main import main as cli_main
from musicsweep.doctor.result import FAIL, FIXED, NOTE, OK, SKIP, Check
from musicsweep.doctor.run import run_doctor
from musicsweep.worker.deps import FIX
from tests.fixtures.ec2 import EC2Project
from tests.fixtures.runpod_graphql import RunPodProject
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import free_port
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import SSHServer
from tests.helpers import write_slurm_config


@pytest.fixture(autouse=True)
def quiet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, and no instance-metadata lookups by boto3 (loopback only)."""
    home = tmp_path / "home"
    home.mkdir()
    if "UV_CACHE_DIR" not in os.environ:  # keep uv's warm cache: no index downloads in tests
        monkeypatch.setenv("UV_CACHE_DIR", str(Path.home() / ".cache/uv"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


def write_yaml(project: Path, config: dict) -> None:
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))


def by_name(checks: list[Check]) -> dict[str, Check]:
    names = [check.name for check in checks]
    assert len(names) == len(set(names)), names
    return {check.name: check for check in checks}


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if check.status == FAIL]


def test_runpod_without_keys_names_all_three_in_one_run(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("RUNPOD_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    missing = project / "keys/id_ed25519"
    runpod = {"public_key_file": f"{missing}.pub", "identity_file": str(missing)}
    write_yaml(project, {"backend": "runpod", "store": "s3://my-bucket/sweeps", "backends": {"runpod": runpod}})
    assert cli_main(["doctor"]) == 1
    out = capsys.readouterr().out
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == [
        "runpod API key",
        "runpod public_key_file",
        "runpod identity_file",
        "runpod AWS credentials",
        "store credentials",
    ]
    assert checks["runpod public_key_file"].fix == f"ssh-keygen -t ed25519 -f {missing}"
    assert checks["runpod GPU types"].status == SKIP
    assert [checks[f"store {what}"].status for what in ("bucket", "write")] == [SKIP, SKIP]
    assert out.splitlines()[-1] == (
        "5 problem(s): runpod API key; runpod public_key_file; runpod identity_file; runpod AWS credentials; "
        "store credentials"
    )


def test_runpod_with_everything_in_place_passes(runpod_project: RunPodProject) -> None:
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == []
    assert checks["runpod GPU types"].status == OK
    assert "NVIDIA L40S $" in checks["runpod GPU types"].detail
    assert [checks[f"store {what}"].status for what in ("credentials", "endpoint", "bucket", "write")] == [OK] * 4


@pytest.mark.heavy
def test_local_defaults_pass_and_fix_creates_the_store_folder(project: Path) -> None:
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == []
    assert checks["store folder"].status == NOTE
    assert checks["worker deps (local backend)"].status == OK
    assert checks["CUDA and bf16"].status == OK
    assert not (project / "runs").exists(), "without --fix nothing is written"
    assert by_name(run_doctor(fix=True))["store folder"].status == FIXED
    assert (project / "runs").is_dir()
    assert cli_main(["doctor"]) == 0


def test_local_python_without_worker_deps(project: Path, tmp_path: Path) -> None:
    import subprocess

    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    write_yaml(
        project,
        {"backend": "local", "store": "/proc/no-store", "backends": {"local": {"python": f"{venv}/bin/python"}}},
    )
    checks = by_name(run_doctor(fix=True))
    assert failed(list(checks.values())) == ["worker deps (backends.local.python)", "store folder"]
    deps = checks["worker deps (backends.local.python)"]
    assert (deps.detail, deps.fix) == (f"{venv}/bin/python cannot import torch, transformers, soundfile", FIX)
    assert "CUDA and bf16" not in checks


def test_ssh_hosts_every_problem_in_one_run_then_fix_known_hosts(
    project: Path, ssh_hosts: list[SSHServer], quiet_home: Path, capsys: pytest.CaptureFixture
) -> None:
    good, default = ssh_hosts
    wrong_key = good.entry(identity_file=str(good.keys.wrong_key), name="wrong-key", retries=0)
    closed = good.entry(port=free_port("127.0.0.2"), name="closed", retries=0)
    default_entry = default.entry(name="default", env=["PATH"])  # uv reaches the host's PATH as at launch
    hosts = [good.entry(python=sys.executable, name="good"), default_entry, wrong_key, closed]
    write_yaml(project, {"backend": "ssh", "store": "./runs", "backends": {"ssh": {"hosts": hosts}}})
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == [
        "ssh good: known_hosts",
        "ssh default: known_hosts",
        "ssh wrong-key: connection",
        "ssh wrong-key: known_hosts",
        "ssh closed: connection",
        "ssh closed: known_hosts",
    ]
    assert "Permission denied" in checks["ssh wrong-key: connection"].detail
    assert "authorized_keys" in checks["ssh wrong-key: connection"].fix
    assert "port" in checks["ssh closed: connection"].fix
    assert [checks[f"ssh good: {what}"].status for what in ("connection", "remote_dir", "worker deps")] == [OK] * 3
    assert "no CUDA device" in checks["ssh good: CUDA and bf16"].detail
    assert checks["ssh default: uv"].status == OK
    assert checks["ssh default: setup offline"].status == OK
    assert checks["ssh default: setup offline"].detail == "the host's uv cache holds every pinned package"
    assert not (good.root / "remote").exists() and not (default.root / "remote").exists(), "the probe writes nothing"

    capsys.readouterr()
    fixed = by_name(run_doctor(fix=True))
    printed = capsys.readouterr().out
    statuses = [fixed[f"ssh {name}: known_hosts"].status for name in ("good", "default", "wrong-key")]
    assert statuses == [FIXED, FIXED, OK], "wrong-key is the same sshd as good: its key is known by then"
    assert printed.count("host key of [127.0.0.2]") == 1 and "ED25519" in printed
    assert failed(list(fixed.values())) == [
        "ssh wrong-key: connection",
        "ssh closed: connection",
        "ssh closed: known_hosts",
    ]
    known = (quiet_home / ".ssh/known_hosts").read_text().splitlines()
    assert len(known) == 2  # the host key of each sshd
    assert by_name(run_doctor())["ssh good: known_hosts"].status == OK


def test_s3_store_checks(project: Path, moto_bucket: S3Bucket) -> None:
    endpoint = moto_bucket.server.endpoint_url
    write_yaml(project, {"store": {"url": moto_bucket.url, "endpoint_url": endpoint, "region": "us-east-1"}})
    checks = by_name(run_doctor())
    assert [checks[f"store {what}"].status for what in ("credentials", "endpoint", "bucket", "write")] == [OK] * 4
    keys = moto_bucket.server.client().list_objects_v2(Bucket=moto_bucket.name).get("KeyCount")
    assert keys == 0, "the write probe is deleted again"

    write_yaml(project, {"store": {"url": "s3://no-such-bucket/x", "endpoint_url": endpoint, "region": "us-east-1"}})
    checks = by_name(run_doctor())
    assert (checks["store bucket"].status, checks["store write"].status) == (FAIL, SKIP)
    assert checks["store bucket"].fix == "aws s3 mb s3://no-such-bucket"

    dead = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    write_yaml(project, {"store": {"url": moto_bucket.url, "endpoint_url": dead, "region": "us-east-1"}})
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == ["store endpoint"]


def test_slurm_test_only(project: Path, slurm_cluster: SlurmCluster) -> None:
    write_slurm_config(project)
    checks = by_name(run_doctor())
    assert checks["slurm sbatch --test-only"].status == OK
    assert checks["worker deps (backends.slurm.python)"].status == OK
    write_slurm_config(project, partition="nope")
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == ["slurm sbatch --test-only"]
    assert "backends.slurm.partition': sbatch rejected the settings" in checks["slurm sbatch --test-only"].detail


def test_ec2_checks_against_moto(ec2_project: EC2Project) -> None:
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == []
    for what in ("region", "credentials", "instance types", "AMI", "instance profile"):
        assert checks[f"ec2 {what}"].status == OK, checks[f"ec2 {what}"]
    ec2_project.configure(ami="ami-00000000000000000", instance_profile="no-such-profile")
    checks = by_name(run_doctor())
    assert failed(list(checks.values())) == ["ec2 AMI", "ec2 instance profile"]


@pytest.mark.heavy
def test_models(project: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_home = tmp_path / "hf"
    snapshot = hf_home / "hub/models--facebook--musicgen-small/snapshots/abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hf_home / "hub/models--facebook--musicgen-small/refs").mkdir()
    (hf_home / "hub/models--facebook--musicgen-small/refs/main").write_text("abc")
    write_yaml(project, {"engine": {"hf_home": str(hf_home)}})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = ["tiny", "small", "facebook/musicgen-large", str(tiny_model_dir), "./missing-model"]
    checks = by_name(run_doctor(models=names))
    assert [checks[f"model {name}"].status for name in names] == [OK, OK, FAIL, OK, FAIL]
    assert checks["model facebook/musicgen-large"].detail == (
        "facebook/musicgen-large is not in the cache and HF_HUB_OFFLINE is set"
    )


def test_backend_option_overrides_the_config(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["doctor", "--backend", "ssh"]) == 1
    out = capsys.readouterr().out
    assert "ssh hosts" in out and "none listed" in out
