"""Dry run: the full plan, and not one file written; the confirmation rule for backends that spend money."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import musicsweep.cli.display as display
import musicsweep.sweep.plan as sweep_module
from musicsweep import MusicsweepError, VariantGenerator, run_sweep
from musicsweep.backends.local import LocalBackend
from musicsweep.billing import HostBilling
from musicsweep.cli.run import confirm_spending
from musicsweep.config import Config, load_config
from musicsweep.layout import SweepDir
from musicsweep.store.local import LocalStore
from musicsweep.store.verify import expected_wav_size
from musicsweep.sweep.plan import jobs_from_variants, make_plan


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def generator(prompts: list[str], durations: list[float]) -> VariantGenerator:
    vg = VariantGenerator()
    vg.add("prompt", prompts)
    vg.add("duration_s", durations)
    vg.add("model", ["tiny"])
    vg.add("seed", [0])
    return vg


class PaidLocalBackend(LocalBackend):
    """The local backend, flagged as one that spends money, to exercise the confirmation rule."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.billing = HostBilling(spends_money=True)


def test_dry_run_prints_the_plan_and_writes_nothing(project: Path) -> None:
    config = load_config()
    jobs = jobs_from_variants(generator(["lofi piano", "dark techno"], [2, 3]).variants(), "dry")
    finished = jobs[0]
    paths = SweepDir(config.sweeps_dir, "dry").job(finished)
    store = LocalStore(Path(config.store.url))
    store.put_bytes(paths.audio_key, b"RIFF" + bytes(expected_wav_size(finished.duration_s) - 4))
    store.put_bytes(paths.done_key, b"")
    before = tree(project)

    for extra in (["--dry-run"], ["-m", "launch.dry_run=true"]):
        result = subprocess.run(
            [sys.executable, "-m", "musicsweep.launch", "sweep.prompts=[lofi piano,dark techno]"]
            + ["sweep.durations=[2,3]", "name=dry", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert tree(project) == before
        lines = result.stdout.splitlines()
        assert lines[1].split() == [
            "job",
            "prompt",
            "duration_s",
            "model",
            "seed",
            "output",
            "store",
            "worker",
            "est_time",
            "est_cost",
        ]
        rows = {line.split()[0]: line for line in lines[2:6]}  # plain lines off a terminal: one per job
        assert set(rows) == {job.job_id for job in jobs}
        assert "skip (in store)" in rows[finished.job_id] and finished.output_name in rows[finished.job_id]
        for job in jobs[1:]:
            cells = rows[job.job_id].split()
            assert {job.output_name, "generate", "localhost#0"} <= set(cells) and cells[-1].startswith("$0.0000")
        assert "localhost#0 3 0.1" in " ".join(result.stdout.split())  # the worker table: 3 jobs, 0.1 audio min
        assert "4 job(s), 3 to generate, 1 already in store" in result.stdout
        assert "estimate:" in result.stdout and "launched" not in result.stdout


def test_dry_run_from_a_script_writes_nothing(project: Path) -> None:
    before = tree(project)
    plan = run_sweep(generator(["a", "b"], [2]), name="script-dry", dry_run=True)
    assert len(plan.to_run) == 2 and set(plan.job_estimate_s) == {job.job_id for job in plan.jobs}
    assert tree(project) == before


@pytest.fixture
def paid_plan(project: Path):
    config = load_config()
    plan = make_plan(jobs_from_variants(generator(["a"], [2]).variants(), "paid"), config, "paid", dry_run=True)
    plan.backend = PaidLocalBackend(config)
    return plan


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_paid_backend_needs_yes_without_a_terminal(paid_plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(MusicsweepError, match="spends money and stdin is not a terminal: pass --yes"):
        confirm_spending(paid_plan, yes=False)
    confirm_spending(paid_plan, yes=True)


@pytest.mark.parametrize(("answer", "confirmed"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)])
def test_paid_backend_asks_on_a_terminal(paid_plan, monkeypatch, capsys, answer: str, confirmed: bool) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    if confirmed:
        confirm_spending(paid_plan, yes=False)
    else:
        with pytest.raises(MusicsweepError, match="not confirmed: nothing was started"):
            confirm_spending(paid_plan, yes=False)
    assert "launch 1 job(s) on local for about $" in capsys.readouterr().out


def test_free_backend_never_asks(paid_plan, monkeypatch: pytest.MonkeyPatch) -> None:
    paid_plan.backend = LocalBackend(paid_plan.backend.config)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    confirm_spending(paid_plan, yes=False)


def test_unconfirmed_launch_writes_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_sweep asks before it writes a single spec or script."""
    monkeypatch.setattr(sweep_module, "get_backend", lambda name, config: PaidLocalBackend(config))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(MusicsweepError, match="pass --yes"):
        run_sweep(generator(["a"], [2]), name="unconfirmed")
    assert not (project / "runs" / "unconfirmed").exists()


def test_live_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(display, "console", Console(file=screen, force_terminal=True, width=100))
    with display.SweepProgress("live") as progress:
        progress.update({"j1": "done", "j2": "running", "j3": "lost"}, {"j1": "h1", "j2": "h1", "j3": "h2"})
    text = screen.getvalue()
    assert "overall" in text and "1/3 finished" in text and "h2" in text and "lost" in text
