"""Corrupt local state: one line naming the file and what to do, no traceback, nothing written over it.

The manifest and the calibration file go through the `musicsweep` console script, as a user meets
them; the pull index and the RunPod pod ledger through the modules that read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.store.local import LocalStore
from musicsweep.store.pull import pull_results
from tests.helpers import wav_bytes

MUSICSWEEP = str(Path(sys.executable).parent / "musicsweep")
HYDRA_SWEEP = ["name=broken", "sweep.prompts=[lofi piano]", "sweep.durations=[1]"]

TRUNCATED = '{"sweep": "broken", "jobs": {"0123abcd": {"prompt": "lofi'
HAND_EDITED = json.dumps({"sweep": "broken", "jobs": {"0123abcd": {"prompt": "x", "duration_s": 1, "colour": "red"}}})


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MUSICSWEEP, *args], capture_output=True, text=True, timeout=300, env=env)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one line on stderr, and no traceback anywhere."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("text", [TRUNCATED, HAND_EDITED, "[]"], ids=["truncated", "hand-edited", "not-an-object"])
def test_an_unreadable_manifest_gets_one_line_and_is_never_written_over(project: Path, text: str) -> None:
    manifest = project / "runs" / "broken" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(text)
    for command in (["status", "broken"], ["pull", "broken", "--once"], ["cancel", "broken"]):
        line = one_line(cli(*command))
        assert line.startswith(f"error: {manifest}: ") and "no command writes over it" in line, line
        assert manifest.read_text() == text


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"prompt": "x", "duration_s": 1, "colour": "red"}, "key 'jobs.0123abcd.output_name': missing"),
        ({"duration_s": 1}, "key 'jobs.0123abcd.prompt': missing"),
        (
            {"prompt": "x", "duration_s": 1, "output_name": "x.wav", "colour": "red"},
            "key 'jobs.0123abcd.colour': unknown",
        ),
        (["prompt"], "key 'jobs.0123abcd': not an object"),
    ],
)
def test_a_bad_job_entry_is_named_by_its_first_bad_key(entry: object, error: str) -> None:
    good = {"prompt": "y", "duration_s": 2, "output_name": "y.wav", "attempts": 1}
    payload = {"sweep": "s", "jobs": {"ffff0000": good, "0123abcd": entry}}
    with pytest.raises(MusicsweepError) as raised:
        Manifest.from_json(payload)
    assert str(raised.value) == error
    assert Manifest.from_json({"sweep": "s", "jobs": {"ffff0000": good}}).jobs["ffff0000"].attempts == 1


def test_a_launch_onto_an_unreadable_manifest_stops_before_writing(project: Path) -> None:
    manifest = project / "runs" / "broken" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(TRUNCATED)
    line = one_line(cli("launch", *HYDRA_SWEEP))
    assert f"{manifest}: unreadable JSON (" in line and "no command writes over it" in line, line
    assert manifest.read_text() == TRUNCATED
    assert sorted(path.name for path in manifest.parent.iterdir()) == ["manifest.json"]  # no spec, no script
    listed = cli("list")
    assert listed.returncode == 0 and "Traceback" not in listed.stdout + listed.stderr
    assert f"warning: {manifest}: unreadable JSON (" in listed.stdout


def test_an_unreadable_calibration_is_set_aside_and_the_estimate_uses_the_defaults(
    project: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    calibration = cache / "musicsweep" / "calibration.json"
    calibration.parent.mkdir(parents=True)
    calibration.write_text('{"version": 1, "entries": [{"backend": "local"')
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    result = cli("launch", *HYDRA_SWEEP, "--dry-run", env=env)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr
    (aside,) = calibration.parent.glob("calibration.json.unreadable-*")
    assert aside.read_text() == '{"version": 1, "entries": [{"backend": "local"'
    assert not calibration.exists()
    warnings = [line for line in result.stdout.splitlines() if "unreadable calibration" in line]
    assert warnings == [f"warning: {calibration}: unreadable calibration ({warnings[0].split(' (', 1)[1]}"]
    assert f"moved to {aside.name}, estimates start afresh" in warnings[0]


def test_an_unreadable_pull_index_is_rebuilt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("s/audio/clip_0123abcd.wav", wav_bytes())
    sweep = SweepDir(tmp_path / "runs", "s")
    sweep.root.mkdir(parents=True)
    sweep.pulled_index.write_text('{"s/audio/clip_0123abcd.wav": {"remote": [')
    assert pull_results(store, sweep) == 1
    assert set(json.loads(sweep.pulled_index.read_text())) == {"s/audio/clip_0123abcd.wav"}
    assert pull_results(store, sweep) == 0  # the rebuilt index holds


def test_an_unreadable_pod_ledger_stops_with_one_line_and_is_kept(tmp_path: Path) -> None:
    from musicsweep.backends.runpod.ledger import PodLedger

    sweep = SweepDir(tmp_path, "pods")
    sweep.pod_ledger.parent.mkdir(parents=True)
    sweep.pod_ledger.write_text('{"pod-1": {"pod_id": "pod-1", "gpu_')
    with pytest.raises(MusicsweepError) as raised:
        PodLedger(sweep)
    message = str(raised.value)
    assert message.startswith(f"{sweep.pod_ledger}: unreadable pod ledger (") and "\n" not in message
    assert "check the RunPod console" in message
    assert sweep.pod_ledger.read_text() == '{"pod-1": {"pod_id": "pod-1", "gpu_'
