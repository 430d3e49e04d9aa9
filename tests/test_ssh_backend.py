"""SSH backend against two real sshd processes on 127.0.0.2 and 127.0.0.3.

The hosts are this machine, so workers run with this repo's interpreter (`python:` set, which
skips the uv setup). Tests that check process handling, secrets, setup caching and relaunches use
a small bash stand-in for the worker, so they need no model.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from musicsweep.backends import get_backend
from musicsweep.backends.base import Launch
from musicsweep.cli.pull import pull
from musicsweep.cli.run import run_sweep
from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.remote.packaging import build_wheel
from musicsweep.remote.ssh import CONNECTIONS
from musicsweep.states import JobState
from musicsweep.sweep.follow import poll_once
from musicsweep.sweep.observe import observe
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.sweep.trackers import OrphanTracker
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import free_port
from tests.fixtures.sshd import SSHServer
from tests.helpers import wait_for_sweep, wav_info

SECRET = "s3cr3t-value-that-must-never-be-written-7f3a9"

# Stands in for `python -m musicsweep.worker SPEC...`: writes pid files and `.done` markers, a
# file in an extra pull folder and the hash of the forwarded secret, then lives on with children
# (an orphan); with FAKE_FAIL_FIRST it marks its jobs failed on a first launch instead.
FAKE_WORKER = r"""
[ "$1" = -c ] && exit 0  # the launch check's import probe: nothing is missing
shift 2
FAKE_PY={python}
work="$MUSICSWEEP_JOB_DIR"
mkdir -p "$work/markers" extra
printf %s "$MUSICSWEEP_TEST_SECRET" | sha256sum | cut -d' ' -f1 >"$work/secret.sha256"
for spec in "$@"; do
  id=$(basename "$spec" .pkl)
  echo "$$ $(ps -o pgid= $$ | tr -d ' ')" >"$work/jobs/$id.pid"
  if [ -n "${FAKE_FAIL_FIRST:-}" ] && [ "$MUSICSWEEP_IS_RESTART" = 0 ]; then
    echo "Traceback: fake failure" >"$work/markers/$id.$MUSICSWEEP_LAUNCH_ID.failed"; continue
  fi
  echo "$id" >"extra/$id.txt"
  name=$("$FAKE_PY" -c 'import sys, cloudpickle; print(cloudpickle.load(open(sys.argv[1], "rb")).output_name)' "$spec")
  mkdir -p "$work/audio"  # an empty but whole WAV:
  printf 'RIFF$\0\0\0WAVEfmt \20\0\0\0\1\0\1\0\0}\0\0\0\372\0\0\2\0\20\0data\0\0\0\0' >"$work/audio/$name"
  touch "$work/markers/$id.done"
done
[ -n "${FAKE_FAIL_FIRST:-}" ] && exit 1
sleep 300 & child=$!
bash -c 'sleep 300 & echo $! >"$1"; wait' _ "$work/grandchild.pid" & parent=$!
while [ ! -s "$work/grandchild.pid" ]; do sleep 0.1; done
echo "$$ $child $parent $(cat "$work/grandchild.pid")" >"$work/tree.pids"
wait
"""


@pytest.fixture
def hosts(project: Path, ssh_hosts: list[SSHServer]) -> Iterator[list[SSHServer]]:
    """The two sshd hosts; every worker a test leaves behind is stopped over ssh afterwards."""
    yield ssh_hosts
    for server in ssh_hosts:
        if server.process is None:
            server.start()
    config = load_config()
    for manifest in config.sweeps_dir.glob("*/manifest.json"):
        sweep = SweepDir(config.sweeps_dir, manifest.parent.name)
        get_backend("ssh", config).cancel(sweep, sweep.read_manifest())


def write_config(
    project: Path, servers: list[SSHServer], ssh: dict | None = None, recovery: dict | None = None, **host
) -> None:
    hosts = [server.entry(**{"python": sys.executable, **host}) for server in servers]
    config = {
        "backend": "ssh",
        "store": "./runs",
        "sweeps_dir": "./runs",
        "engine": {"batch_size": 4},
        "recovery": {"backoff_s": 0.5, **(recovery or {})},
        "backends": {"ssh": {"hosts": hosts, **(ssh or {})}},
    }
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))


def variants(count: int, **extra) -> list[dict]:
    return [{"prompt": f"tiny tune {i}", "duration_s": 2, "model": "tiny", "seed": i, **extra} for i in range(count)]


def fake_worker(project: Path) -> str:
    """The `python:` setting that runs the stand-in worker."""
    path = project.parent / "fake_worker.sh"
    path.write_text(FAKE_WORKER.replace("{python}", shlex.quote(sys.executable)))
    return f"bash {path}"


def files_under(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sweep_over_two_hosts_survives_a_lost_host(project: Path, hosts: list[SSHServer]) -> None:
    write_config(project, hosts, env=["HF_HUB_OFFLINE"])
    plan = run_sweep(variants(8), name="ssh-sweep")
    assert sorted({shard.host for shard in plan.shards}) == sorted(s.host().label for s in hosts)
    assert all(len(shard.jobs) == 4 for shard in plan.shards)
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "ssh-sweep")
    manifest = sweep.read_manifest()
    backend = get_backend("ssh", config)

    accepted = [server.accepted() for server in hosts]
    CONNECTIONS.reset()
    states = backend.poll(sweep, manifest)
    assert CONNECTIONS.total() == 2
    assert [server.accepted() - before for server, before in zip(hosts, accepted, strict=True)] == [1, 1]
    assert set(states.values()) <= {JobState.RUNNING, JobState.DONE}

    lost_host = hosts[1]
    lost_host.stop()
    states = backend.poll(sweep, manifest)
    on_lost = {job_id for job_id, entry in manifest.jobs.items() if entry.host == lost_host.host().label}
    assert {states[job_id] for job_id in on_lost} == {JobState.LOST}
    assert JobState.FAILED not in states.values()
    lost_host.start()

    states = wait_for_sweep("ssh-sweep", timeout_s=400)
    assert set(states.values()) == {JobState.DONE}
    wavs = sorted(sweep.audio.glob("*.wav"))
    assert sorted(w.name for w in wavs) == sorted(entry.output_name for entry in manifest.jobs.values())
    for wav in wavs:
        rate, channels, frames = wav_info(wav)
        assert (rate, channels) == (32000, 1) and frames == 64000
    claims = [p.name.split(".")[0] for s in hosts for p in (s.root / "remote/runs/ssh-sweep/claims").glob("*")]
    assert sorted(claims) == sorted(manifest.jobs), "every clip generated exactly once"
    assert len(sweep.cost_report.read_text().splitlines()) == 9


def test_s3_store_with_forwarded_credentials(project: Path, hosts: list[SSHServer], moto_bucket: S3Bucket) -> None:
    """The worker uploads to S3 with AWS credentials that reach it only through ssh's stdin."""
    aws = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"]
    write_config(project, hosts[:1], env=["HF_HUB_OFFLINE", "AWS_SHARED_CREDENTIALS_FILE", *aws])
    config = yaml.safe_load((project / "musicsweep.yaml").read_text())
    config["store"] = {"url": moto_bucket.url, "endpoint_url": moto_bucket.server.endpoint_url, "region": "us-east-1"}
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    run_sweep(variants(2), name="s3-ssh")
    assert set(wait_for_sweep("s3-ssh", timeout_s=400).values()) == {JobState.DONE}
    sweep = SweepDir(load_config().sweeps_dir, "s3-ssh")
    assert len(list(sweep.audio.glob("*.wav"))) == 2
    assert not (hosts[0].root / "remote/runs/s3-ssh/audio").exists(), "results went to S3, not the host's disk"
    secret = moto_bucket.server.secret_key.encode()
    assert [p for p in files_under(project, hosts[0].folder) if secret in p.read_bytes()] == []


def test_orphan_tree_killed_secret_never_written(project: Path, hosts: list[SSHServer], monkeypatch) -> None:
    monkeypatch.setenv("MUSICSWEEP_TEST_SECRET", SECRET)
    write_config(project, hosts, python=fake_worker(project), env=["MUSICSWEEP_TEST_SECRET"])
    run_sweep(variants(4, extra_pull_dirs=["extra"]), name="orphans")
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "orphans")
    trees = [s.root / "remote/runs/orphans/tree.pids" for s in hosts]
    deadline = time.monotonic() + 30
    while not all(path.exists() for path in trees) and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [int(pid) for path in trees for pid in path.read_text().split()]
    assert len(pids) == 8 and all(alive(pid) for pid in pids)

    backend = get_backend("ssh", config)
    states = poll_once(sweep, sweep.read_manifest(), backend, OrphanTracker(0))
    assert set(states.values()) == {JobState.DONE}
    assert not [pid for pid in pids if alive(pid)], "the orphan worker and all its children are gone"
    assert sorted(p.name for p in (project / "extra").glob("*.txt")) == sorted(f"{j}.txt" for j in states)
    assert len(list(sweep.audio.glob("*.wav"))) == 4

    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    for server in hosts:
        assert (server.root / "remote/runs/orphans/secret.sha256").read_text().strip() == digest
    scanned = files_under(project, *(s.folder for s in hosts))
    assert any(p.name == "worker_0.sh" for p in scanned)
    leaks = [path for path in scanned if SECRET.encode() in path.read_bytes()]
    assert leaks == []


def test_setup_runs_once_per_environment_and_prepare_every_launch(
    project: Path, hosts: list[SSHServer], monkeypatch
) -> None:
    monkeypatch.setenv("MUSICSWEEP_TEST_SECRET", SECRET)
    server = hosts[0]
    setup = f"echo ran >>{server.root}/setup_count"
    write_config(
        project,
        [server],
        ssh={"prepare": [f"echo prepared >>{server.root}/prepare_count"]},
        python=fake_worker(project),
        setup=setup,
        env=["MUSICSWEEP_TEST_SECRET"],
    )
    run_sweep(variants(1), name="first")
    run_sweep(variants(1, seed=99), name="second")
    assert (server.root / "setup_count").read_text().splitlines() == ["ran"]
    assert (server.root / "prepare_count").read_text().splitlines() == ["prepared", "prepared"]
    assert (server.root / "remote/code/musicsweep.yaml").exists()
    assert not (server.root / "remote/code/runs").exists(), "the local sweeps folder is not code"
    (project / "pyproject.toml").write_text("[project]\nname = 'changed'\n")
    run_sweep(variants(1, seed=7), name="third")
    assert (server.root / "setup_count").read_text().splitlines() == ["ran", "ran"]


def test_default_setup_installs_the_wheel_offline_once(project: Path, hosts: list[SSHServer], monkeypatch) -> None:
    """A user's own folder (only musicsweep.yaml, no pyproject), no `python`, and a host with no
    package index (UV_OFFLINE reaches it): the host installs this project's wheel and the pinned
    runtime dependencies from its uv cache, once, and generates the clip.
    """
    # The launcher's own wheel build needs the build backend in the uv cache before going offline
    # (on a fresh machine only `uv sync` has run, which may not leave an isolated build's env).
    build_wheel(project / "warm-build")
    monkeypatch.setenv("UV_OFFLINE", "1")
    server = hosts[0]
    write_config(project, [server], python=None, env=["PATH", "UV_OFFLINE", "HF_HUB_OFFLINE"])
    run_sweep(variants(1), name="uv-first")
    assert sorted(p.name for p in (project / "runs/uv-first/setup").iterdir()) == [
        "musicsweep-0.1.0-py3-none-any.whl",
        "pylock.toml",
    ]
    setup_log = (server.root / "remote/setup.log").read_text()
    assert "trying the package index" not in setup_log
    site = next((server.root / "remote/code/.venv/lib").glob("python3.*/site-packages"))
    installed = {path.name.split("-")[0].lower() for path in site.glob("*.dist-info")}
    assert {"musicsweep", "torch", "transformers", "soundfile"} <= installed
    assert not installed & {"pytest", "ruff", "moto", "selenium"}, "the dev group stays off the host"
    assert set(wait_for_sweep("uv-first", timeout_s=300).values()) == {JobState.DONE}
    run_sweep(variants(1, seed=5), name="uv-second")
    assert (server.root / "remote/setup.log").read_text() == setup_log, "the second sweep reused the env"
    assert set(wait_for_sweep("uv-second", timeout_s=300).values()) == {JobState.DONE}


def test_every_failing_host_is_named_in_one_error(project: Path, hosts: list[SSHServer]) -> None:
    write_config(project, hosts, python=fake_worker(project), setup="echo no index here; exit 3")
    with pytest.raises(MusicsweepError) as caught:
        run_sweep(variants(2), name="setup-fails")
    message = str(caught.value)
    assert message.startswith("2 hosts failed: ")
    for server in hosts:
        log = server.root / "remote/setup.log"
        assert f"start on host {server.host().label} failed: environment setup failed, see {log}" in message
        assert log.read_text() == "no index here\n"


def test_relaunch_failed_over_ssh(project: Path, hosts: list[SSHServer], monkeypatch) -> None:
    monkeypatch.setenv("MUSICSWEEP_TEST_SECRET", SECRET)
    monkeypatch.setenv("FAKE_FAIL_FIRST", "1")
    write_config(project, hosts, python=fake_worker(project), env=["MUSICSWEEP_TEST_SECRET", "FAKE_FAIL_FIRST"])
    run_sweep(variants(4), name="relaunch")
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "relaunch")
    status = pull("relaunch", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0)
    assert status == 0
    manifest = sweep.read_manifest()
    assert len(manifest.launches) == 2
    assert sorted(p.name for p in sweep.audio.glob("*.wav")) == sorted(e.output_name for e in manifest.jobs.values())
    pulled = {path.name for path in (sweep.root / "logs").glob("worker_*.log")}
    assert {f"worker_0.{record.id}.log" for record in manifest.launches} <= pulled, "each attempt's log, pulled"
    latest = manifest.launches[-1].id  # the first attempt's `.failed` stay, superseded
    remote_failed = [p for s in hosts for p in (s.root / "remote/runs/relaunch/markers").glob(f"*.{latest}.failed")]
    assert remote_failed == []


@pytest.mark.parametrize("fault", ["unreachable", "wrong key", "remote_dir not writable"])
def test_bad_host_fails_before_any_host_starts(project: Path, hosts: list[SSHServer], ssh_keys, fault) -> None:
    good, bad = hosts
    write_config(project, [good, bad])
    config = yaml.safe_load((project / "musicsweep.yaml").read_text())
    entry = config["backends"]["ssh"]["hosts"][1]
    if fault == "unreachable":
        entry |= {"host": "127.0.0.4", "port": free_port("127.0.0.4")}
    elif fault == "wrong key":
        entry["identity_file"] = str(ssh_keys.wrong_key)
    else:
        (bad.root / "a_file").write_text("in the way")
        entry["remote_dir"] = str(bad.root / "a_file" / "remote")
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    label = f"{entry['user']}@{entry['host']}:{entry['port']}"
    with pytest.raises(MusicsweepError) as error:
        run_sweep(variants(2), name="bad")
    message = str(error.value)
    assert label in message and "\n" not in message
    assert not (Path(good.entry()["remote_dir"]) / "code").exists()
    assert not (Path(good.entry()["remote_dir"]) / "runs").exists()
    assert not (project / "runs" / "bad" / "manifest.json").exists()


def test_config_errors_name_the_key(project: Path) -> None:
    (project / "musicsweep.yaml").write_text(
        yaml.safe_dump(
            {"backend": "ssh", "backends": {"ssh": {"hosts": [{"host": "h", "remote_dir": "/x", "port": 0}]}}}
        )
    )
    with pytest.raises(MusicsweepError, match=r"backends.ssh'.hosts\[0\].port"):
        run_sweep(variants(1), name="x")
    (project / "musicsweep.yaml").write_text(
        yaml.safe_dump(
            {"backend": "ssh", "backends": {"ssh": {"hosts": [{"host": "h", "remote_dir": "/x", "gpu": 1}]}}}
        )
    )
    with pytest.raises(MusicsweepError, match=r"hosts\[0\].gpu: unknown key"):
        run_sweep(variants(1), name="x")
    os.environ.pop("NOT_SET_ANYWHERE", None)
    (project / "musicsweep.yaml").write_text(
        yaml.safe_dump(
            {
                "backend": "ssh",
                "backends": {"ssh": {"hosts": [{"host": "h", "remote_dir": "/x", "env": ["NOT_SET_ANYWHERE"]}]}},
            }
        )
    )
    with pytest.raises(MusicsweepError, match="host h:22: env NOT_SET_ANYWHERE is not set"):
        run_sweep(variants(1), name="x")


def test_gpus_pin_one_worker_per_gpu(project: Path) -> None:
    host = {"host": "gpu1", "remote_dir": "/scratch/m", "gpus": 2, "hourly_cost_usd": 2.0, "env": ["AWS_SECRET"]}
    (project / "musicsweep.yaml").write_text(yaml.safe_dump({"backend": "ssh", "backends": {"ssh": {"hosts": [host]}}}))
    config = load_config()
    backend = get_backend("ssh", config)
    shards = backend.shard(jobs_from_variants(variants(4), "gpu"))
    assert [(shard.host, len(shard.jobs), shard.hourly_cost_usd) for shard in shards] == [("gpu1:22", 2, 2.0)] * 2
    launch = Launch(SweepDir(config.sweeps_dir, "gpu"), "id", False, {"MUSICSWEEP_STORE": "./runs"})
    scripts = [
        backend.worker_script(launch, shard, backend.settings.hosts[0], slot, 2) for slot, shard in enumerate(shards)
    ]
    assert [script.env["CUDA_VISIBLE_DEVICES"] for script in scripts] == ["0", "1"]
    assert all(script.env["MUSICSWEEP_STORE"] == "/scratch/m/runs" for script in scripts)
    assert all(script.python == "/scratch/m/code/.venv/bin/python" for script in scripts)
    assert "AWS_SECRET" not in scripts[0].render()


def test_dry_run_writes_nothing_on_the_hosts(project: Path, hosts: list[SSHServer]) -> None:
    write_config(project, hosts)
    before = {server.root: sorted(files_under(server.root)) for server in hosts}
    plan = run_sweep(variants(4), name="dry", dry_run=True)
    assert len(plan.to_run) == 4
    for server in hosts:
        assert not Path(server.entry()["remote_dir"]).exists()
        assert sorted(files_under(server.root)) == before[server.root]
    assert not (project / "runs").exists()


def test_a_failed_launch_reads_failed_and_a_rerun_starts_it(project: Path, hosts: list[SSHServer]) -> None:
    """SSH setup fails on the hosts: the jobs must not stay `pending` for ever (issue 16, repro 6)."""
    write_config(project, hosts, python=fake_worker(project), setup="exit 1")
    with pytest.raises(MusicsweepError, match="environment setup failed"):
        run_sweep(variants(4), name="bad-setup")
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "bad-setup")
    manifest = sweep.read_manifest()
    assert all(entry.error and "environment setup failed" in entry.error for entry in manifest.jobs.values())
    seen = observe(sweep, manifest, get_backend("ssh", config), config)
    assert set(seen.states.values()) == {JobState.FAILED}
    write_config(project, hosts, python=fake_worker(project))
    plan = run_sweep(variants(4), name="bad-setup")
    assert len(plan.to_run) == 4, "a re-run starts the jobs of the failed launch"
    assert set(wait_for_sweep("bad-setup", timeout_s=120).values()) == {JobState.DONE}


def test_a_host_killed_and_restarted_under_relaunch_failed_generates_each_clip_once(
    project: Path, hosts: list[SSHServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """A host unreachable for a few seconds keeps its jobs `lost` while its lease is live: no other
    host generates them again (10 generations for 8 clips before leases, issue 16, repro 3)."""
    write_config(project, hosts, env=["HF_HUB_OFFLINE"], recovery={"lease_s": 60})
    run_sweep(variants(8, duration_s=1), name="lost-host")
    lost_host = hosts[1]
    lost_host.stop()
    restart = threading.Timer(10.0, lost_host.start)
    restart.start()
    try:
        assert pull("lost-host", interval_s=1, relaunch_failed=True, orphan_grace_s=0) == 0
    finally:
        restart.join()
    out = capsys.readouterr().out
    assert f"host {lost_host.host().label} unreachable since" in out and "job(s) lost; lease expires" in out
    sweep = SweepDir(load_config().sweeps_dir, "lost-host")
    assert len(sweep.read_manifest().launches) == 1, "nothing relaunched"
    logs = [log for s in hosts for log in (s.root / "remote/runs/lost-host/logs").glob("worker_*.log")]
    # generations, not uploads: a worker whose claim was taken over drops its clip unuploaded
    assert sum(log.read_text().count("] generated ") for log in logs) == 8
    assert len(list(sweep.audio.glob("*.wav"))) == 8


@pytest.mark.parametrize(("status", "fails"), [(24, False), (23, True)])
def test_rsync_vanished_files_are_not_a_failure(tmp_path: Path, monkeypatch, status: int, fails: bool) -> None:
    """rsync exits 24 when a source file vanished mid-copy (an editor's temp file): what it copied
    is whole and the next sync brings the rest. 23 (a real partial transfer) still fails."""
    from musicsweep.remote.ssh import SSHHost, rsync

    fake = tmp_path / "bin" / "rsync"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho 'file has vanished: x.tmp' >&2\nexit {status}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    host = SSHHost(host="127.0.0.1", remote_dir="/tmp/x")
    if fails:
        with pytest.raises(MusicsweepError, match="code sync on host 127.0.0.1:22 failed: file has vanished"):
            rsync(host, ["./"], ":/tmp/x/code/", what="code sync")
    else:
        rsync(host, ["./"], ":/tmp/x/code/", what="code sync")
