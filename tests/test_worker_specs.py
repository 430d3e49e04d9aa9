"""Loading job specs (musicsweep/worker/specs.py): a broken spec fails only its own job."""

from __future__ import annotations

from pathlib import Path

from musicsweep.job import Job
from musicsweep.worker.specs import load_specs


def test_a_truncated_spec_fails_only_its_own_job(tmp_path: Path) -> None:
    import cloudpickle

    paths = []
    for seed in range(3):
        good = Job("sw", "lofi piano", 1.0, "tiny", seed, "lofi")
        path = tmp_path / "jobs" / f"{good.job_id}.pkl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(cloudpickle.dumps(good))
        paths.append(path)
    paths[1].write_bytes(paths[1].read_bytes()[:20])
    loaded = load_specs(paths)
    assert [j.seed for j in loaded.jobs] == [0, 2]
    assert list(loaded.broken) == [paths[1].stem]
    reason = loaded.broken[paths[1].stem]
    assert reason.startswith(f"{paths[1]}: cannot load job spec: ") and "\n" not in reason
