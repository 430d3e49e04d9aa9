"""README's command 1, read from README.md and run verbatim on a fresh clone with its own venv.

The clone is of this checkout's HEAD (committed files only, as a new user gets them); the uv
package cache is shared, so the run links packages instead of downloading them. A README that
stops matching reality fails here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from musicsweep.costs.rows import read_cost_report
from tests.helpers import wav_info

REPO = Path(__file__).resolve().parents[1]
# Variables that would point the clone at this checkout's venv, config or code.
LEAKY_ENV = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "MUSICSWEEP_CONFIG", "PYTHONPATH", "PYTHONHOME")


def readme_command(number: int) -> str:
    """The command under `# {number}.` in the first bash block of README's "The two commands"."""
    text = (REPO / "README.md").read_text()
    section = text.split("## The two commands", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {number}."))
    return next(line for line in lines[start + 1 :] if line.strip() and not line.startswith("#"))


def fresh_clone(target: Path) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", head.stdout.strip()], check=True)
    return target


def test_readme_names_both_commands() -> None:
    assert readme_command(1).startswith("uv run ")
    assert readme_command(2) == "./scripts/test"
    assert (REPO / ".ci/run").read_text().rstrip().endswith("\n./scripts/test")


@pytest.mark.e2e
def test_command_one_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    assert not (clone / ".venv").exists() and not (clone / "runs").exists()
    env = {name: value for name, value in os.environ.items() if name not in LEAKY_ENV}
    result = subprocess.run(
        ["bash", "-c", readme_command(1)], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (clone / ".venv/bin/python").exists(), "the command built the clone's own venv"
    sweep = clone / "runs/first-sweep"
    wavs = sorted((sweep / "audio").glob("*.wav"))
    assert len(wavs) == 4
    rows = read_cost_report(sweep / "cost_report.csv")
    assert len(rows) == 4
    assert sorted(row["s3_filename"] for row in rows) == [wav.name for wav in wavs]
    for row in rows:
        rate, channels, frames = wav_info(sweep / "audio" / row["s3_filename"])
        assert (rate, channels) == (32000, 1)
        assert abs(frames - float(row["requested_duration_s"]) * rate) <= 640
    assert sorted(float(row["requested_duration_s"]) for row in rows) == [10.0, 10.0, 20.0, 20.0]
    assert "4 job(s) failed" not in result.stdout
