"""Per backend: what its launch needs beyond this machine and the store.

Each function returns its rows and never raises for a failed check. The SLURM row is sbatch's
own `--test-only` verdict on the configured settings; EC2 rows are one API call each (region,
instance types, AMI, instance profile); RunPod rows are the API key, the key files and the AWS
credentials that reach the pods, then the GPU types when the key works; Ray rows are the address,
the cluster's Ray version, the resources a worker asks for and the store seen from a task.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from musicsweep.config import Config
from musicsweep.doctor.env import worker_checks
from musicsweep.doctor.result import FAIL, OK, SKIP, Check, guarded
from musicsweep.errors import MusicsweepError


def local_checks(config: Config, fix: bool) -> list[Check]:
    from musicsweep.backends.local import LocalBackend

    backend = LocalBackend(config)
    where = "backends.local.python" if backend.settings.python else "local backend"
    return worker_checks(backend.settings.python, config.engine, fix, where)


def ssh_checks(config: Config, fix: bool) -> list[Check]:
    from musicsweep.doctor.ssh import ssh_host_checks
    from musicsweep.remote.hosts import parse_settings

    settings = parse_settings(config)
    if not settings.hosts:
        return [Check("ssh hosts", FAIL, "none listed", f"list them under {config.where('backends.ssh.hosts')}")]
    missing = [(host.label, name) for host in settings.hosts for name in host.env if name not in os.environ]
    rows = [Check("ssh env", FAIL, f"host {host}: {name} is not set here", f"export {name}") for host, name in missing]
    return rows + ssh_host_checks(list(settings.hosts), config, fix)


def slurm_checks(config: Config, fix: bool) -> list[Check]:
    from musicsweep.backends.slurm.backend import SlurmBackend
    from musicsweep.doctor.ssh import ssh_host_checks

    backend = SlurmBackend(config)
    rows = [guarded("slurm sbatch --test-only", lambda: sbatch_verdict(backend), "correct the key named")]
    if backend.login is not None:
        return rows + ssh_host_checks([backend.login], config, fix)
    python = backend.settings.python or sys.executable
    return rows + worker_checks(python, config.engine, fix, "backends.slurm.python")[:1]  # CUDA is on the nodes


def sbatch_verdict(backend) -> str:
    backend.validate(dry_run=True)
    return f"sbatch accepts: {' '.join(backend.settings.sbatch_options()) or 'the defaults'}"


def ec2_checks(config: Config, fix: bool) -> list[Check]:
    import boto3

    from musicsweep.backends.ec2.config import load_ec2_config

    try:
        settings = load_ec2_config(config)
    except MusicsweepError as error:
        return [Check("ec2 settings", FAIL, str(error), "correct the key named")]
    rows = [Check("ec2 region", OK, f"{settings.region} (known to botocore)")]  # load_ec2_config checked it
    session = boto3.session.Session(region_name=settings.region)
    if session.get_credentials() is None:
        fix_creds = "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set AWS_PROFILE"
        rows.append(Check("ec2 credentials", FAIL, "no AWS credentials for the EC2 API", fix_creds))
        skipped = "needs AWS credentials"
        return rows + [Check(f"ec2 {what}", SKIP, skipped) for what in ("instance types", "AMI", "instance profile")]
    rows.append(Check("ec2 credentials", OK, f"from {session.get_credentials().method}"))
    ec2 = session.client("ec2", endpoint_url=settings.endpoint_url)
    iam = session.client("iam", endpoint_url=settings.endpoint_url)
    types = list(settings.instance_types)
    rows.append(
        aws_row("ec2 instance types", lambda: ec2.describe_instance_types(InstanceTypes=types), f"{types} exist")
    )
    rows.append(
        aws_row(
            "ec2 AMI",
            lambda: ec2.describe_images(ImageIds=[settings.ami])["Images"][0],
            f"{settings.ami} exists in {settings.region}",
        )
    )
    profile = settings.instance_profile.rsplit("/", 1)[-1]
    rows.append(
        aws_row(
            "ec2 instance profile",
            lambda: iam.get_instance_profile(InstanceProfileName=profile),
            f"{profile} exists",
            fix="create it with S3 access to the store (aws iam create-instance-profile)",
        )
    )
    return rows


def aws_row(name: str, call, detail: str, fix: str = "correct the key in backends.ec2") -> Check:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call()
    except ClientError as error:
        info = error.response.get("Error", {})
        return Check(name, FAIL, f"{info.get('Code')}: {info.get('Message')}", fix)
    except (BotoCoreError, IndexError) as error:
        return Check(name, FAIL, str(error) or "not found", fix)
    return Check(name, OK, detail)


def runpod_checks(config: Config, fix: bool) -> list[Check]:
    from musicsweep.backends.runpod.api import api_key_from
    from musicsweep.backends.runpod.backend import RunPodBackend

    backend = RunPodBackend(config)
    settings, where = backend.settings, backend.where
    rows = [guarded("runpod API key", lambda: api_key_check(api_key_from, settings, where), "export RUNPOD_API_KEY=…")]
    for key in ("public_key_file", "identity_file"):
        path = Path(getattr(settings, key)).expanduser()
        if path.is_file():
            rows.append(Check(f"runpod {key}", OK, str(path)))
        else:
            fix = f"ssh-keygen -t ed25519 -f {path.with_suffix('') if key == 'public_key_file' else path}"
            rows.append(
                Check(f"runpod {key}", FAIL, f"no such file: {path} ({config.where(f'backends.runpod.{key}')})", fix)
            )
    aws = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    missing = [name for name in aws if name not in os.environ]
    if missing:
        detail = f"{' and '.join(missing)} not set here: pods get S3 credentials only through ssh, from this env"
        rows.append(Check("runpod AWS credentials", FAIL, detail, f"export {' '.join(missing)}"))
    else:
        rows.append(Check("runpod AWS credentials", OK, "in this environment, forwarded to pods over ssh"))
    if not config.store.url.startswith("s3://"):
        rows.append(Check("runpod store", FAIL, f"{config.store.url} is not s3://", f"{config.where('store')}: s3://…"))
    if rows[0].failed:
        return [*rows, Check("runpod GPU types", SKIP, "needs the API key")]
    return [*rows, guarded("runpod GPU types", lambda: gpu_types_check(backend), f"correct {where}.gpu_types")]


def api_key_check(api_key_from, settings, where: str) -> str:
    api_key_from(settings.api_key, where)
    return "from RUNPOD_API_KEY" if os.environ.get("RUNPOD_API_KEY") else f"from {where}.api_key"


def gpu_types_check(backend) -> str:
    backend.billing.load_prices()
    prices = backend.billing.gpu_prices
    unknown = [gpu for gpu in backend.settings.gpu_types if gpu not in prices]
    if unknown:
        raise MusicsweepError(f"unknown GPU type(s): {', '.join(unknown)}")
    return ", ".join(f"{gpu} ${prices[gpu]:.2f}/h" for gpu in backend.settings.gpu_types)


def ray_checks(config: Config, fix: bool) -> list[Check]:
    """Address, Ray version, resources and the store as a task on the cluster sees it: every
    problem of one configuration in one run (a check that needs an answering cluster is skipped)."""
    from musicsweep.backends.ray.backend import RayBackend

    try:
        backend = RayBackend(config)
    except MusicsweepError as error:
        return [Check("ray settings", FAIL, str(error), "correct the key named")]
    address = backend.settings.address
    rows = [
        guarded(
            "ray address",
            lambda: f"{address} answers: Ray {backend.cluster.ray_version()}",
            f"start the cluster, or forward its dashboard to {address} (kubectl port-forward, ray dashboard)",
        )
    ]
    if rows[0].failed:
        return rows + [Check(f"ray {what}", SKIP, "needs the cluster") for what in ("version", "resources", "store")]
    return rows + [
        guarded("ray version", lambda: f"cluster and launcher run Ray {backend.check_version()}", "pip install ray==…"),
        guarded(
            "ray resources",
            lambda: f"{backend.check_resources()} worker(s) of {backend.machine()} fit at once",
            "ask for what a node has (backends.ray.num_gpus, num_cpus, resources)",
        ),
        guarded("ray store", backend.probe_store, f"{config.where('store')}: s3://… or a folder every node shares"),
    ]


CHECKS = {
    "local": local_checks,
    "ssh": ssh_checks,
    "slurm": slurm_checks,
    "ec2": ec2_checks,
    "runpod": runpod_checks,
    "ray": ray_checks,
}
# What uv is needed for on each backend (None: not needed).
UV_NEEDED = {
    "local": None,
    "ssh": "build the wheel that SSH hosts install",
    "slurm": None,
    "ec2": "build the wheel that instances install",
    "runpod": "build the wheel that pods install",
    "ray": "build the wheel that the Ray job carries",
}
