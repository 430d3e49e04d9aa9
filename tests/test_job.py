"""Job ids, output names, JobPaths layout, scripts and the shared state rules."""

import shlex
from pathlib import Path

import pytest

from musicsweep import MusicsweepError
from musicsweep.backends.probe import HostProbe, classify, parse_probe
from musicsweep.job import Job
from musicsweep.layout import JobPaths
from musicsweep.scripts import WorkerScript, write_script
from musicsweep.states import JobState
from musicsweep.sweep.plan import jobs_from_variants
from tests.helpers import COLLIDING


def make_job(**changes) -> Job:
    variant = {"prompt": "lofi piano", "duration_s": 10, "model": "tiny", "seed": 1} | changes
    return Job.from_variant(variant, "s", "variant 0")


def test_job_id_depends_only_on_audio_fields() -> None:
    base = make_job()
    assert base.job_id == make_job().job_id
    assert base.job_id == make_job(file_name="other").job_id  # the name does not change the audio
    for change in ({"prompt": "x"}, {"duration_s": 11}, {"seed": 2}, {"model": "small"}, {"guidance_scale": 1.0}):
        assert make_job(**change).job_id != base.job_id
    assert base.output_name == f"lofi_piano_{base.job_id[:8]}.wav"
    assert len(base.job_id) == 16


def test_job_paths_layout(tmp_path: Path) -> None:
    job = make_job()
    paths = JobPaths.of(job, tmp_path)
    assert paths.spec == tmp_path / "jobs" / f"{job.job_id}.pkl"
    assert paths.pid == tmp_path / "jobs" / f"{job.job_id}.pid"
    assert paths.audio_key == f"s/audio/{job.output_name}"
    assert paths.cost_key == f"s/costs/{job.job_id}.json"
    assert paths.done_key == f"s/markers/{job.job_id}.done"
    assert paths.failed_key("L1") == f"s/markers/{job.job_id}.L1.failed"
    assert paths.claim_key(2) == f"s/claims/{job.job_id}/000002.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "musicgen huge!"}, "variant 0: key 'model': unknown model name form 'musicgen huge!'"),
        ({"duration_s": -3}, "variant 0: key 'duration_s' must be positive"),
        ({"duration_s": "long"}, "variant 0: key 'duration_s' is not a number"),
        ({"prompt": "  "}, "variant 0: key 'prompt' is empty"),
        ({"seed": "abc"}, "variant 0: key 'seed' is not an integer"),
        ({"extend_stride_s": 40}, "key 'extend_stride_s' must be in"),
    ],
)
def test_bad_variants_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(MusicsweepError, match=message.replace("(", r"\(")):
        make_job(**change)


def test_model_name_forms_accepted() -> None:
    for name in ("tiny", "small", "melody", "facebook/musicgen-small", "./models/mine", "/abs/model"):
        assert make_job(model=name).model == name


def test_script_quotes_everything_and_is_private(tmp_path: Path) -> None:
    script = WorkerScript(
        sweep="s",
        worker_id=0,
        num_workers=1,
        cwd=str(tmp_path / "dir with space"),
        log=str(tmp_path / "logs" / "w 0.log"),
        specs=[str(tmp_path / "a'b.pkl")],
        python="python3",
        env={"MUSICSWEEP_STORE": "/x/$(rm -rf ~)"},
    )
    path = tmp_path / "worker.sh"
    write_script(path, script.render())
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o700
    assert "export MUSICSWEEP_STORE='/x/$(rm -rf ~)'" in text
    assert "'" + str(tmp_path / "dir with space") + "'" in text
    assert shlex.quote(str(tmp_path / "a'b.pkl")) in text


def test_probe_parsing_treats_zombies_as_dead() -> None:
    output = "#ps\n  10 Ss\n  11 Z\n#jobs\njobs/aaaa.pid 10 10\njobs/bbbb.pid 11 11\n#workers\n#markers\n"
    probe = parse_probe(output)
    assert probe.alive_pids == {10}
    assert probe.job_pids == {"aaaa": (10, 10), "bbbb": (11, 11)}


def test_classify_states() -> None:
    probe = HostProbe(
        alive_pids={10, 20},
        job_pids={"a": (10, 10), "b": (10, 10), "c": (20, 20), "d": (30, 30)},
        markers={"a.done", "c.done", "f.L2.failed", "g.L1.failed"},
    )
    jobs = {"a": 0, "b": 0, "c": 1, "d": 2, "e": 3, "f": 4, "g": 0}
    states = classify(jobs, probe, dict.fromkeys(jobs, "L2"))
    # a is done while its worker still works on b; c's worker has nothing left: an orphan.
    assert states == {
        "a": JobState.DONE,
        "b": JobState.RUNNING,
        "c": JobState.DONE_ORPHANS,
        "d": JobState.FAILED,
        "e": JobState.PENDING,
        "f": JobState.FAILED,
        "g": JobState.PENDING,  # an older attempt's failure never hides the latest attempt
    }


def test_job_ids_are_16_hex_and_the_32_bit_collision_is_gone() -> None:
    first, second = jobs_from_variants(COLLIDING, "s")
    assert first.job_id[:8] == second.job_id[:8], "the reported 32-bit collision"
    assert first.job_id != second.job_id and len(first.job_id) == 16
    assert first.output_name == f"prompt_number_51_{first.job_id[:8]}.wav"  # hash8 stays in the file name


def test_a_job_id_collision_is_refused_at_plan_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Job, "job_id", property(lambda job: "0" * 16))
    with pytest.raises(MusicsweepError, match=r"variant 1: job id 0{16} collides with variant 0 \(different audio\)"):
        jobs_from_variants(COLLIDING, "s")
