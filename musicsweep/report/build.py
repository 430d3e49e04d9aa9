"""The listening report, `report/index.html` in the sweep folder (`python -m musicsweep.report SWEEP`).

It reads only the local sweep folder (manifest, pulled WAVs, cost rows, markers, worker
lifetimes), measures every WAV, draws one waveform + log-mel PNG per clip in a process pool,
and writes a static page whose links are all relative, so the folder can be copied anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicsweep.atomic import atomic_write_text
from musicsweep.costs.rows import CostRow
from musicsweep.costs.summary import read_lifetimes
from musicsweep.costs.summary import summarize as cost_summary
from musicsweep.errors import MusicsweepError
from musicsweep.layout import WORKERS_DIR, SweepDir
from musicsweep.manifest import Manifest
from musicsweep.report.audio_checks import AudioCheck, check_samples, read_wav
from musicsweep.report.grid import BOOKKEEPING_KEYS, Grid, build_grid
from musicsweep.report.html import render_page
from musicsweep.report.model import DONE, FAILED, NO_AUDIO, UNFINISHED, Clip, Summary

logger = logging.getLogger(__name__)

SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE", re.IGNORECASE)


def first_error_line(text: str) -> str:
    """The line that says what went wrong: for a traceback, its final exception line."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "(no error text)"
    if lines[0].startswith("Traceback"):
        unindented = [line for line in lines[1:] if not line[0].isspace()]
        return unindented[-1] if unindented else lines[-1].strip()
    return lines[0].strip()


def redact(text: str, environ: Mapping[str, str]) -> str:
    """Hide credential values of this environment, should an error message ever echo one."""
    for name, value in environ.items():
        if SECRET_NAME.search(name) and len(value) >= 8:
            text = text.replace(value, "[redacted]")
    return text


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MusicsweepError(f"{path}: unreadable JSON: {error}") from None


def collect_clips(sweep: SweepDir, manifest: Manifest) -> list[Clip]:
    """Every job of the manifest with its state, error line and cost row, from the local folder."""
    clips = []
    for job_id, entry in manifest.jobs.items():
        paths = sweep.job_by_id(job_id, entry.output_name)
        wav = sweep.local_file(paths.audio_key)
        failed = sweep.local_file(paths.failed_key(entry.launch))
        if sweep.local_file(paths.done_key).exists():
            state = DONE if wav.exists() else NO_AUDIO
        else:
            state = FAILED if failed.exists() else UNFINISHED
        variant = entry.variant or {}
        axes = {key: value for key, value in variant.items() if key not in BOOKKEEPING_KEYS}
        axes |= {"duration_s": entry.duration_s, "model": entry.model, "seed": entry.seed}
        cost_path = sweep.local_file(paths.cost_key)
        error = redact(first_error_line(failed.read_text(errors="replace")), os.environ) if state == FAILED else None
        clips.append(
            Clip(
                job_id=job_id,
                prompt=str(entry.prompt),
                model=entry.model,
                requested_s=float(entry.duration_s),
                output_name=str(entry.output_name),
                host=entry.host,
                axes=axes,
                state=state,
                error=error,
                cost=CostRow.from_dict(read_json(cost_path)) if cost_path.exists() else None,
            )
        )
    return clips


def analyze_clip(wav: Path, png: Path, requested_s: float) -> AudioCheck:
    """Runs in a pool worker: measure the WAV and (re)draw its PNG if the WAV is newer."""
    samples, sampling_rate, clip_level = read_wav(wav)
    if not png.exists() or png.stat().st_mtime < wav.stat().st_mtime:
        from musicsweep.report.images import render_clip_image

        render_clip_image(samples, sampling_rate, png)
    return check_samples(samples, sampling_rate, requested_s, clip_level)


def analyze_all(clips: list[Clip], sweep: SweepDir, workers: int | None = None) -> None:
    """Measure and draw every clip whose WAV is here, in parallel; a bad WAV is noted, not fatal."""
    present = [clip for clip in clips if (sweep.audio / clip.output_name).exists()]
    if not present:
        return
    workers = max(1, min(workers or os.cpu_count() or 1, len(present)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            clip.job_id: pool.submit(
                analyze_clip, sweep.audio / clip.output_name, sweep.report_dir / clip.image_name, clip.requested_s
            )
            for clip in present
        }
        for clip in present:
            try:
                clip.check = futures[clip.job_id].result()
            except Exception as error:  # a corrupt WAV must not hide the other clips
                clip.check_error = f"unreadable audio: {type(error).__name__}: {error}".splitlines()[0]


def paid_cost(sweep: SweepDir, clips: list[Clip]) -> tuple[float | None, str]:
    """What the machines cost: auto_pull's cost_summary.json, else the pulled worker lifetimes x rate."""
    if sweep.cost_summary.exists():
        paid = read_json(sweep.cost_summary).get("paid_usd")
        if isinstance(paid, int | float):
            return float(paid), "cost_summary.json"
    lifetimes = read_lifetimes(sweep.folder(WORKERS_DIR))
    if lifetimes:
        return cost_summary(lifetimes, []).paid_usd, "worker lifetimes x hourly rate"
    costs = [clip.cost.estimated_cost_usd for clip in clips if clip.cost and clip.cost.estimated_cost_usd is not None]
    return (sum(costs), "sum of clip costs: no worker lifetimes pulled") if costs else (None, "no cost data")


def estimate_beside(sweep: SweepDir) -> str | None:
    """auto_pull's launch estimate next to the measured machine time and paid cost, with the ratios."""
    if not sweep.cost_summary.exists():
        return None
    summary = read_json(sweep.cost_summary)
    estimate, ratio = summary.get("estimate"), summary.get("estimate_ratio") or {}
    if not isinstance(estimate, dict):
        return None

    def times(value: object) -> str:
        return f"{value:.2f}x" if isinstance(value, int | float) else "-"

    return (
        f"{estimate['machine_s']:.1f} s machine time, ${estimate['paid_usd']:.6f} estimated at launch; "
        f"measured {summary.get('machine_s', 0.0):.1f} s, ${summary.get('paid_usd', 0.0):.6f} "
        f"(measured/estimate {times(ratio.get('machine_s'))} time, {times(ratio.get('paid_usd'))} paid)"
    )


def summarize(sweep: SweepDir, manifest: Manifest, clips: list[Clip]) -> Summary:
    states: dict[str, int] = {}
    flags: dict[str, list[str]] = {}
    for clip in clips:
        states[clip.state] = states.get(clip.state, 0) + 1
        for flag in clip.check.flags if clip.check else {}:
            flags.setdefault(flag, []).append(clip.job_id)
        if clip.check_error:
            flags.setdefault("unreadable", []).append(clip.job_id)
    paid, basis = paid_cost(sweep, clips)
    marginal = sum(c.cost.estimated_cost_usd or 0.0 for c in clips if c.cost)
    backends = [manifest.backend] if manifest.backend else []
    return Summary(
        name=sweep.name,
        created=manifest.created,
        generated=time.time(),
        models=sorted({clip.model for clip in clips}),
        backends=backends,
        hosts=sorted({clip.host for clip in clips if clip.host}),
        states=states,
        audio_minutes=sum(clip.check.duration_s for clip in clips if clip.check) / 60.0,
        paid_usd=paid,
        paid_basis=basis,
        marginal_usd=marginal,
        flags=flags,
        has_cost_report=sweep.cost_report.exists(),
        estimate=estimate_beside(sweep),
    )


@dataclass(frozen=True)
class ReportData:
    """Everything the page is drawn from; the listening server keeps it to redraw the page per request."""

    clips: list[Clip]
    grid: Grid
    summary: Summary


def prepare_report(sweep: SweepDir, workers: int | None = None) -> ReportData:
    """Read the sweep, measure its WAVs and draw their images (skipping images that are up to date)."""
    missing = [name for name in ("matplotlib", "soundfile") if importlib.util.find_spec(name) is None]
    if missing:
        fix = "uv sync --extra report, or pip install '.[report]' in a checkout"
        raise MusicsweepError(f"the report needs {' and '.join(missing)}: {fix}")
    manifest = sweep.read_manifest()
    clips = collect_clips(sweep, manifest)
    analyze_all(clips, sweep, workers)
    grid = build_grid([(clip.prompt, clip.axes) for clip in clips])
    return ReportData(clips, grid, summarize(sweep, manifest, clips))


def write_static_page(sweep: SweepDir, data: ReportData) -> Path:
    """`report/index.html` with the saved ratings and A/B results shown read-only; returns its path."""
    from musicsweep.curate.page import static_extras

    page = sweep.report_dir / "index.html"
    atomic_write_text(page, render_page(data.summary, data.grid, data.clips, static_extras(sweep.root, data.clips)))
    logger.info(data.summary.checks_line)
    return page


def write_report(sweep: SweepDir, workers: int | None = None) -> Path:
    """Write `report/index.html` (and its images) for the sweep; returns the page's path."""
    return write_static_page(sweep, prepare_report(sweep, workers))
