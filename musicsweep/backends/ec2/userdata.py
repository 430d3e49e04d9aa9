"""An instance's user data: the common worker script with an EC2 prologue and epilogue.

The prologue schedules the `shutdown -h +N` backstop and a `shutdown -h now` on any exit, installs
uv (unless the image has it) and `musicsweep[worker]` from the wheel in the store, with the pinned
dependencies the wheel carries (only once its SHA-256 is the one the launcher built: the store could
hold another), fetches the shard's job specs and the launch's spec list, and starts
a watcher that polls IMDSv2 `spot/instance-action`: on a notice it sends USR2 to the script, which
forwards it to the worker (it stops after the current batch). The epilogue marks what is left for
relaunch and uploads the log. Every value travels as a quoted export; no credential is included:
instances reach S3 through their instance profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from musicsweep.backends.ec2.config import EC2Config
from musicsweep.contract import STORE, STORE_OPTIONS, LaunchEnv, WorkerEnv
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import JOBS_DIR, PID_SUFFIX, JobPaths, WorkerPaths
from musicsweep.remote.packaging import StoredWheel
from musicsweep.scripts import WorkerScript

USER_DATA_LIMIT = 16 * 1024

# Set MUSICSWEEP_EC2_PYTHON (in the script's environment) to a Python that already has
# musicsweep[worker] to skip installing uv and the wheel: the tests run user data that way.
PROLOGUE = r"""# EC2 prologue: backstop, shutdown on exit, install, job specs, spot-interruption watcher.
shutdown -h +"$MUSICSWEEP_EC2_MAX_RUNTIME_MIN" || true
trap 'shutdown -h now' EXIT
trap ':' USR2
if [ -z "${MUSICSWEEP_EC2_PYTHON:-}" ]; then
  export HOME="${HOME:-/root}"
  # uv and boto3 (to fetch the wheel): the image's own if it has them, else from the package index
  # (uv in its own venv: system pips are often externally managed)
  musicsweep_uv=$(command -v uv) \
    || { python3 -m venv uvenv && uvenv/bin/pip install -q uv && musicsweep_uv="$PWD/uvenv/bin/uv"; } || exit 1
  "$musicsweep_uv" venv -q --python "$MUSICSWEEP_EC2_PYTHON_VERSION" venv || exit 1
  fetch=python3
  python3 -c 'import boto3' 2>/dev/null \
    || { "$musicsweep_uv" pip install -q --python venv/bin/python boto3 && fetch=venv/bin/python; } || exit 1
  MUSICSWEEP_EC2_PYTHON="$PWD/venv/bin/python"
else
  fetch="$MUSICSWEEP_EC2_PYTHON"
fi
wheel="${MUSICSWEEP_EC2_WHEEL##*/}"
"$fetch" - "$wheel" <<'PY' || exit 1
import hashlib, json, os, sys, zipfile
import boto3
from botocore.config import Config
opts = json.loads(os.environ.get("{store_options}") or "{}")
bucket, _, prefix = os.environ["{store}"].removeprefix("s3://").partition("/")
key = "/".join(p for p in (prefix.strip("/"), os.environ["MUSICSWEEP_EC2_WHEEL"]) if p)
style = Config(s3={"addressing_style": "path"}) if opts.get("endpoint_url") else None
s3 = boto3.client("s3", endpoint_url=opts.get("endpoint_url"), region_name=opts.get("region"), config=style)
s3.download_file(bucket, key, sys.argv[1])
with open(sys.argv[1], "rb") as handle:  # the digest of the wheel the launcher built, carried in this script
    digest = hashlib.sha256(handle.read()).hexdigest()
if digest != os.environ["MUSICSWEEP_EC2_WHEEL_SHA256"]:
    sys.exit(f"wheel digest mismatch: refusing to install {key}: its sha256 is {digest}")
with zipfile.ZipFile(sys.argv[1]) as wheel:  # the runtime pins the wheel carries (hatch_build.py)
    if "musicsweep/pylock.worker.toml" in wheel.namelist():
        open("pylock.toml", "wb").write(wheel.read("musicsweep/pylock.worker.toml"))
PY
if [ -n "${musicsweep_uv:-}" ]; then
  install() { "$musicsweep_uv" pip install -q --python venv/bin/python "$@"; }
  if [ -f pylock.toml ]; then install -r pylock.toml && install --no-deps "$PWD/$wheel"
  else install "musicsweep[worker] @ file://$PWD/$wheel"; fi || exit 1
fi
"$MUSICSWEEP_EC2_PYTHON" -m musicsweep.backends.ec2.agent fetch || exit 1
musicsweep_watch() {
  local token notice
  while sleep "$MUSICSWEEP_EC2_POLL_S"; do
    token=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
      "$MUSICSWEEP_EC2_IMDS/latest/api/token") || continue
    notice=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" \
      "$MUSICSWEEP_EC2_IMDS/latest/meta-data/spot/instance-action") || continue
    echo "[musicsweep] spot interruption notice: $notice"
    printf '%s\n' "$notice" > spot-notice.json
    # One USR2, once the worker has written its pid files (its handlers are installed by then): a signal
    # repeated while Python shuts down would kill it, since Python restores default handlers on exit.
    until compgen -G '{jobs}/*{pid}' >/dev/null; do sleep 1; done
    kill -USR2 $$
    return
  done
}
musicsweep_watch &
watcher_pid=$!"""

EPILOGUE = r"""# EC2 epilogue: stop the watcher, mark unfinished clips for relaunch, upload the log.
kill "$watcher_pid" 2>/dev/null
"$MUSICSWEEP_EC2_PYTHON" -m musicsweep.backends.ec2.agent finish "$worker_status"
"""


@dataclass(frozen=True)
class InstanceWork:
    """One instance's share of a launch, and what its script needs to know about it."""

    sweep: str
    launch_id: str
    worker_id: int
    num_workers: int
    jobs: list[Job]
    hourly_usd: float
    wheel: StoredWheel


def render_user_data(settings: EC2Config, work: InstanceWork, launch_env: dict[str, str], where: str = "ec2") -> str:
    """The user-data script of one instance; raises MusicsweepError (naming `where`) above EC2's 16 KB limit."""
    work_dir = Path(settings.root) / work.sweep
    launch = dataclasses.replace(LaunchEnv.from_env(launch_env), launch_id=work.launch_id, sweep=work.sweep)
    env = WorkerEnv(launch, str(work_dir), work.worker_id, work.num_workers, work.hourly_usd).to_env()
    env |= {
        "AWS_DEFAULT_REGION": settings.region,
        "MUSICSWEEP_EC2_WHEEL": work.wheel.key,
        "MUSICSWEEP_EC2_WHEEL_SHA256": work.wheel.sha256,
        "MUSICSWEEP_EC2_IMDS": settings.imds_url.rstrip("/"),
        "MUSICSWEEP_EC2_POLL_S": f"{settings.imds_poll_s:g}",
        "MUSICSWEEP_EC2_MAX_RUNTIME_MIN": str(settings.max_runtime_minutes),
        "MUSICSWEEP_EC2_PYTHON_VERSION": settings.python_version,
    }
    script = WorkerScript(
        sweep=work.sweep,
        worker_id=work.worker_id,
        num_workers=work.num_workers,
        cwd=str(work_dir),
        log=str(WorkerPaths(work_dir, work.sweep, work.worker_id, work.launch_id).log),
        specs=[str(JobPaths.of(job, Path()).spec) for job in work.jobs],
        python='"$MUSICSWEEP_EC2_PYTHON"',
        env=env,
        prologue=PROLOGUE.replace("{jobs}", JOBS_DIR)
        .replace("{pid}", PID_SUFFIX)
        .replace("{store}", STORE)
        .replace("{store_options}", STORE_OPTIONS),
        epilogue=EPILOGUE,
    ).render()
    size = len(script.encode())
    if size > USER_DATA_LIMIT:
        raise MusicsweepError(
            f"{where}: worker {work.worker_id}'s user data is {size} bytes, over EC2's {USER_DATA_LIMIT}-byte limit "
            f"({len(work.jobs)} clips on one instance): use more instances or fewer clips_per_instance"
        )
    return script
