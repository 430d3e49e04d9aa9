"""The Hydra app as a user runs it (a subprocess), against the same sweep written as a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep import VariantGenerator
from musicsweep.backends import get_backend
from musicsweep.cli.hydra_app import stable_name
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.sweep.plan import jobs_from_variants


def launch(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "musicsweep.launch", *overrides], capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def manifest_ids(name: str) -> set[str]:
    return set(SweepDir(load_config().sweeps_dir, name).read_manifest().jobs)


def script_ids(**axes: list) -> set[str]:
    """The job ids the equivalent sweep script produces (run_sweep's own path)."""
    generator = VariantGenerator()
    for key, values in axes.items():
        generator.add(key, values)
    return {job.job_id for job in jobs_from_variants(generator.variants(), "script")}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def cancel_after(project: Path):
    """Sweeps named here are cancelled at the end of the test, so no worker outlives it."""
    names: list[str] = []
    yield names
    config = load_config()
    for name in names:
        sweep = SweepDir(config.sweeps_dir, name)
        if sweep.manifest.exists():
            get_backend("local", config).cancel(sweep, sweep.read_manifest())


@pytest.mark.e2e
def test_overrides_give_the_same_jobs_as_the_sweep_script(project: Path, cancel_after: list[str]) -> None:
    cancel_after.append("from-cli")
    result = launch(
        "model=tiny",
        "backend=local",
        "sweep.prompts=[lofi piano,dark techno]",
        "sweep.durations=[2,3]",
        "sweep.seeds=[1,2]",
        "name=from-cli",
    )
    assert "musicsweep.auto_pull from-cli" in result.stdout
    expected = script_ids(prompt=["lofi piano", "dark techno"], duration_s=[2, 3], model=["tiny"], seed=[1, 2])
    assert len(expected) == 8
    assert manifest_ids("from-cli") == expected


@pytest.mark.e2e
def test_multirun_is_one_sweep_submitted_without_waiting(project: Path, cancel_after: list[str]) -> None:
    cancel_after.append("multi")
    result = launch("-m", "sweep.durations=1,2", "sweep.prompts=[ambient pad]", "sweep.seeds=[5]", "name=multi")
    assert "musicsweep.auto_pull multi" in result.stdout
    sweep = SweepDir(load_config().sweeps_dir, "multi")
    assert manifest_ids("multi") == script_ids(prompt=["ambient pad"], duration_s=[1, 2], model=["tiny"], seed=[5])
    # The launcher returned once the workers were started, long before the first clip is done.
    assert not list(sweep.root.glob("markers/*.done"))
    assert {entry.worker for entry in sweep.read_manifest().jobs.values()} == {0}
    assert not (project / "multirun").exists() and not (project / "outputs").exists()

    pull = subprocess.run(
        [str(Path(sys.executable).parent / "musicsweep"), "pull", "multi", "--interval", "1", "--orphan-grace", "0"],
        capture_output=True,
        text=True,
        timeout=480,  # generous: the test machine is shared and often heavily loaded
    )
    assert pull.returncode == 0, pull.stderr
    assert len(list(sweep.audio.glob("*.wav"))) == 2
    progress = [line for line in pull.stdout.splitlines() if "finished (" in line]
    assert progress[-1].endswith("localhost: done 2"), progress  # plain lines off a terminal
    summary = next(line for line in pull.stdout.splitlines() if line.startswith("summary:"))
    assert "2 clip(s), 0.05 audio min" in summary and str(sweep.cost_report) in summary
    assert "per audio min" in summary


def test_multirun_names_a_stable_sweep_from_its_jobs(project: Path) -> None:
    args = ["-m", "sweep.durations=2,3", "sweep.prompts=[a,b]", "--dry-run"]
    first, second = launch(*args), launch(*args)
    name = stable_name(_generator(prompt=["a", "b"], duration_s=[2, 3], model=["tiny"]).variants())
    assert f"sweep {name}:" in first.stdout and f"sweep {name}:" in second.stdout
    assert name != stable_name(_generator(prompt=["a"], duration_s=[2], model=["tiny"]).variants())


def _generator(**axes: list) -> VariantGenerator:
    generator = VariantGenerator()
    for key, values in axes.items():
        generator.add(key, values)
    generator.add("seed", [0])
    return generator


def test_prompts_file_and_generation_axes(project: Path) -> None:
    (project / "prompts.txt").write_text("# demo\nwarm lofi piano ; 2 ; lofi\ndark techno ; 3 ; techno\n")
    result = launch("sweep.prompts_file=prompts.txt", "sweep.guidance_scale=[1.5,3]", "--dry-run")
    generator = VariantGenerator.from_prompts_file(project / "prompts.txt")
    generator.add("model", ["tiny"])
    generator.add("seed", [0])
    generator.add("guidance_scale", [1.5, 3])
    jobs = jobs_from_variants(generator.variants(), "script")
    assert len(jobs) == 4
    for job in jobs:
        assert f"{job.job_id}  " in result.stdout and job.output_name in result.stdout


def test_hydra_settings_beat_musicsweep_yaml(project: Path) -> None:
    args = ["backend=local", "+backend.settings.workers=2", "store.url=elsewhere", "sweep.prompts=[a,b]"]
    result = launch(*args, "sweep.durations=[2]", "--dry-run", "--yes")
    assert f"store {project / 'elsewhere'}" in result.stdout
    assert "2 worker(s) on 1 host(s)" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backend=nonesuch"], "Could not find 'backend/nonesuch'"),
        (["model=huge"], "Could not find 'model/huge'"),
        (["sweep.durations=[-5]"], "sweep.durations[0]: must be positive, got -5"),
        (["sweep.durations=[2,oops]"], "sweep.durations: expected"),
        (["sweep.seeds=[x]"], "sweep.seeds: expected"),
        (["sweep.top_k=[-1]"], "key 'top_k' must be in [0, inf], got -1"),
        (["store=s3"], "store=s3: the store url is"),
        (["nonesuch=1"], "Could not override 'nonesuch'"),
        (["-m", "backend=local,ssh"], "-m: every combination must share one config"),
    ],
)
def test_bad_override_is_one_line_and_writes_nothing(project: Path, overrides: list[str], message: str) -> None:
    before = tree(project)
    result = launch("sweep.prompts=[a]", "sweep.durations=[2]", *overrides, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert tree(project) == before


def test_missing_prompts_name_the_key(project: Path) -> None:
    result = launch("sweep.durations=[2]", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: sweep.prompts: required")
    assert result.stdout == ""
