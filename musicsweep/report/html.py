"""The report page itself: one static HTML file with inline CSS and relative links only.

Every piece of text from the sweep (prompts, errors, names) goes through `html.escape`, and
every file name through URL quoting, so a prompt such as `<b>drums & bass</b>` shows as typed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html import escape
from urllib.parse import quote

from musicsweep.layout import AUDIO_DIR
from musicsweep.report.grid import Grid
from musicsweep.report.images import HEIGHT_PX, WIDTH_PX
from musicsweep.report.model import DONE, Clip, Summary

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a202c; background: #f7fafc; }
h1 { margin: 0 0 .3em; font-size: 1.6em; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: 0 0 1em; }
dl.summary dt { font-weight: 600; color: #4a5568; }
dl.summary dd { margin: 0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #cbd5e0; padding: .5em; vertical-align: top; text-align: left; }
thead th { background: #edf2f7; position: sticky; top: 0; }
th.prompt { max-width: 18em; font-weight: 600; }
th.prompt .note { font-weight: 400; color: #718096; }
div.clip { width: 360px; }
div.clip + div.clip { margin-top: .8em; }
div.clip img { display: block; width: 360px; height: 180px; background: #2d3748; }
div.clip audio { width: 360px; margin: .3em 0; }
ul.facts, ul.flags { list-style: none; padding: 0; margin: .2em 0; display: flex; flex-wrap: wrap; gap: .2em .8em; }
ul.flags li { background: #fed7d7; color: #9b2c2c; padding: 0 .4em; border-radius: 3px; }
div.problem { background: #fff5f5; }
.state { font-weight: 600; color: #9b2c2c; }
.error { font-family: ui-monospace, monospace; font-size: .9em; white-space: pre-wrap; word-break: break-word; }
td.empty { color: #a0aec0; }
.checks-ok { color: #276749; }
"""


def _time(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp)) if stamp else "-"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.2f}" if value >= 1 else f"${value:.6f}"


def render_summary(summary: Summary, clips: list[Clip]) -> str:
    """The header: what the sweep was, what it cost, and which clips failed a check."""
    states = ", ".join(f"{count} {state}" for state, count in sorted(summary.states.items()))
    rows = [
        ("date", f"{_time(summary.created)} (report written {_time(summary.generated)})"),
        ("models", ", ".join(summary.models) or "-"),
        ("backends", f"{', '.join(summary.backends) or '-'} (hosts: {', '.join(summary.hosts) or '-'})"),
        ("total clips", f"{len(clips)} ({states})"),
        ("audio minutes", f"{summary.audio_minutes:.2f}"),
        ("paid cost", f"{_usd(summary.paid_usd)} ({summary.paid_basis})"),
        ("clips' share", f"{_usd(summary.marginal_usd)} (generation time x hourly rate, summed over clips)"),
        ("cost per audio minute", _usd(summary.usd_per_audio_minute)),
        ("estimate at launch", summary.estimate or "-"),
    ]
    items = "".join(f"<dt>{escape(key)}</dt><dd>{escape(value)}</dd>" for key, value in rows)
    if summary.has_cost_report:
        items += '<dt>costs</dt><dd><a href="../cost_report.csv">cost_report.csv</a></dd>'
    names = {clip.job_id: clip.output_name for clip in clips}
    if summary.flags:
        checks = "".join(
            f"<li>{escape(flag)}: {len(ids)} clip(s): "
            + ", ".join(f'<a href="#clip-{escape(i)}">{escape(names[i])}</a>' for i in ids)
            + "</li>"
            for flag, ids in sorted(summary.flags.items())
        )
        items += f'<dt>audio checks</dt><dd><ul class="checks">{checks}</ul></dd>'
    else:
        items += '<dt>audio checks</dt><dd class="checks-ok">every pulled clip passed</dd>'
    return f'<h1>{escape(summary.name)}</h1>\n<dl class="summary">{items}</dl>'


@dataclass(frozen=True)
class PageExtras:
    """What curation adds to the page (musicsweep.curate.page): a header block, per-clip blocks and
    data attributes, and a script. The report itself stays free of curation logic."""

    head: str = ""
    header: str = ""
    clip_parts: dict[str, str] = field(default_factory=dict)
    clip_attributes: dict[str, str] = field(default_factory=dict)
    script: str = ""


NO_EXTRAS = PageExtras()


def render_clip(clip: Clip, extras: PageExtras = NO_EXTRAS) -> str:
    """Player, image, facts and flags of one clip; its state and error line if it has no audio."""
    parts = []
    if clip.state != DONE:
        parts.append(f'<p class="state">{escape(clip.state)}</p>')
    if clip.error:
        parts.append(f'<p class="error">{escape(clip.error)}</p>')
    if clip.check:
        alt = f"waveform and log-mel spectrogram of {clip.output_name}"
        parts.append(
            f'<img loading="lazy" src="{escape(quote(clip.image_name))}" width="{WIDTH_PX}" height="{HEIGHT_PX}"'
            f' alt="{escape(alt)}">'
        )
        parts.append(
            f'<audio controls preload="none" src="../{AUDIO_DIR}/{escape(quote(clip.output_name))}"'
            f' title="{escape(clip.output_name)}"></audio>'
        )
    facts = [clip.output_name]
    if clip.check:
        facts.append(f"{clip.check.duration_s:.2f} s (asked {clip.requested_s:g} s)")
    else:
        facts.append(f"asked {clip.requested_s:g} s")
    if clip.cost and clip.cost.generation_time_s is not None:
        facts.append(f"generated in {clip.cost.generation_time_s:.2f} s")
    if clip.cost:
        facts.append(_usd(clip.cost.estimated_cost_usd))
    parts.append('<ul class="facts">' + "".join(f"<li>{escape(fact)}</li>" for fact in facts) + "</ul>")
    flags = dict(clip.check.flags) if clip.check else {}
    if clip.check_error:
        flags["unreadable"] = clip.check_error
    if flags:
        parts.append(
            '<ul class="flags">'
            + "".join(f'<li title="{escape(why)}">{escape(flag)}: {escape(why)}</li>' for flag, why in flags.items())
            + "</ul>"
        )
    parts.append(extras.clip_parts.get(clip.job_id, ""))
    css = "clip" + (" problem" if clip.state != DONE or flags else "")
    attributes = f'class="{css}" id="clip-{escape(clip.job_id)}" data-state="{escape(clip.state)}"'
    attributes += extras.clip_attributes.get(clip.job_id, "")
    return f"<div {attributes}>{''.join(parts)}</div>"


def render_table(grid: Grid, clips: list[Clip], extras: PageExtras = NO_EXTRAS) -> str:
    head = "".join(f'<th scope="col">{escape(grid.label(column))}</th>' for column in grid.columns)
    rows = []
    for prompt in grid.prompts:
        note = grid.row_notes.get(prompt)
        header = escape(prompt) + (f'<div class="note">{escape(note)}</div>' if note else "")
        cells = []
        for column in grid.columns:
            indices = grid.cells.get((prompt, column), [])
            inner = "".join(render_clip(clips[i], extras) for i in indices)
            cells.append(f"<td>{inner}</td>" if indices else '<td class="empty">-</td>')
        rows.append(f'<tr><th scope="row" class="prompt">{header}</th>{"".join(cells)}</tr>')
    return (
        f'<table class="grid">\n<thead><tr><th scope="col">prompt</th>{head}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>"
    )


def render_page(summary: Summary, grid: Grid, clips: list[Clip], extras: PageExtras = NO_EXTRAS) -> str:
    script = f"<script>{extras.script}</script>\n" if extras.script else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(summary.name)}: musicsweep listening report</title>\n<style>{STYLE}</style>\n"
        f"{extras.head}</head>\n"
        f"<body>\n<header>{render_summary(summary, clips)}{extras.header}</header>\n"
        f"<main>\n{render_table(grid, clips, extras)}\n</main>\n{script}</body>\n</html>\n"
    )
