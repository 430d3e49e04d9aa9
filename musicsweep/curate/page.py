"""What curation adds to the listening page: filters, ratings (read-only or editable), A/B results.

The static report shows the saved ratings read-only; `musicsweep report --serve` draws the same page
with rating controls and a script that saves each change through the local server (server.py).
Every value from the sweep or the journals goes through `html.escape`.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from musicsweep.curate.ab import AxisResults, axis_results, read_choices
from musicsweep.curate.ratings import ClipVerdict, Rating, latest_ratings, verdicts
from musicsweep.report.grid import format_value, value_sort_key
from musicsweep.report.html import PageExtras
from musicsweep.report.model import DONE, Clip

RATING_FILTERS = [("", "any rating"), ("unrated", "unrated"), ("kept", "kept"), ("discarded", "discarded")] + [
    (f">={n}", f"rated {n} or more") for n in range(5, 0, -1)
]

STYLE = """
form.filters { display: flex; flex-wrap: wrap; gap: .4em 1em; align-items: center; margin: .5em 0 1em; }
form.filters label { color: #4a5568; }
p.ratings { margin: .2em 0; color: #2d3748; }
p.ratings .who { font-weight: 600; }
p.problems { color: #9b2c2c; }
fieldset.rate { border: 0; padding: 0; margin: .3em 0; display: flex; flex-wrap: wrap; gap: .25em; }
fieldset.rate button { min-width: 2em; border: 1px solid #a0aec0; background: #fff; border-radius: 3px; }
fieldset.rate button[aria-pressed="true"] { background: #2b6cb0; color: #fff; border-color: #2b6cb0; }
fieldset.rate button.discard[aria-pressed="true"] { background: #c53030; border-color: #c53030; }
fieldset.rate input.note { flex: 1 1 12em; min-width: 8em; }
fieldset.rate .saved { color: #276749; font-size: .9em; }
fieldset.rate .saved.bad { color: #9b2c2c; }
div.clip.current { outline: 3px solid #2b6cb0; outline-offset: 3px; }
table.ab { margin: .5em 0 1em; }
p.keys { color: #4a5568; }
kbd { border: 1px solid #a0aec0; border-radius: 3px; padding: 0 .3em; background: #fff; font-size: .9em; }
"""

FILTER_SCRIPT = """
(() => {
  const form = document.querySelector('form.filters');
  if (!form) return;
  const matchesRating = (clip, wanted) => {
    const rating = clip.dataset.rating;
    if (wanted === 'unrated') return !rating;
    if (wanted === 'kept' || wanted === 'discarded') return clip.dataset.keep === wanted;
    return rating !== '' && rating !== undefined && Number(rating) >= Number(wanted.slice(2));
  };
  const apply = () => {
    const wanted = [...form.querySelectorAll('select')].filter(s => s.value !== '').map(s => [s.name, s.value]);
    let shown = 0;
    for (const clip of document.querySelectorAll('div.clip')) {
      const axes = JSON.parse(clip.dataset.axes || '{}');
      const matches = ([key, value]) => key === '_rating' ? matchesRating(clip, value) : axes[key] === value;
      clip.hidden = !wanted.every(matches);
      shown += clip.hidden ? 0 : 1;
    }
    form.querySelector('output').textContent = `${shown} clip(s) shown`;
  };
  form.addEventListener('change', apply);
  window.musicsweepFilter = apply;
  apply();
})();
"""

RATE_SCRIPT = """
(() => {
  const api = '/' + location.pathname.split('/')[1] + '/api/';
  const clips = [...document.querySelectorAll('div.clip[data-clip]')];
  let current = null;
  const queues = new Map();
  const select = clip => {
    if (current) current.classList.remove('current');
    current = clip;
    clip.classList.add('current');
    clip.scrollIntoView({block: 'nearest', inline: 'nearest'});
  };
  const move = step => {
    const shown = clips.filter(clip => !clip.hidden);
    if (!shown.length) return;
    const at = shown.indexOf(current);
    select(shown[at < 0 ? 0 : Math.min(shown.length - 1, Math.max(0, at + step))]);
  };
  const show = clip => {
    const rating = clip.dataset.rating, keep = clip.dataset.keep;
    clip.querySelectorAll('button.star').forEach(b => b.setAttribute('aria-pressed', String(b.value === rating)));
    clip.querySelector('button.keep').setAttribute('aria-pressed', String(keep === 'kept'));
    clip.querySelector('button.discard').setAttribute('aria-pressed', String(keep === 'discarded'));
  };
  const save = (clip, change) => {
    // The page holds the clip's state and sends all of it; changes to one clip go out in order.
    if ('rating' in change) clip.dataset.rating = change.rating === null ? '' : String(change.rating);
    if ('keep' in change) clip.dataset.keep = change.keep === true ? 'kept' : change.keep === false ? 'discarded' : '';
    show(clip);
    const note = clip.querySelector('input.note');
    const body = JSON.stringify({
      clip: clip.dataset.clip,
      rating: clip.dataset.rating ? Number(clip.dataset.rating) : null,
      keep: clip.dataset.keep === 'kept' ? true : clip.dataset.keep === 'discarded' ? false : null,
      note: note.value,
    });
    const status = clip.querySelector('.saved');
    status.textContent = 'saving';
    status.classList.remove('bad');
    const send = () => fetch(api + 'rate', {method: 'POST', headers: {'Content-Type': 'application/json'}, body})
      .then(async response => {
        const text = await response.text();
        status.textContent = response.ok ? 'saved' : 'not saved: ' + text.trim();
        status.classList.toggle('bad', !response.ok);
      })
      .catch(error => { status.textContent = 'not saved: ' + error; status.classList.add('bad'); });
    const queued = (queues.get(clip) || Promise.resolve()).then(send);
    queues.set(clip, queued);
    return queued;
  };
  const toggleKeep = (clip, keep) =>
    save(clip, {keep: clip.dataset.keep === (keep ? 'kept' : 'discarded') ? null : keep});
  const playPause = clip => {
    const player = clip.querySelector('audio');
    if (!player) return;
    if (!player.paused) { player.pause(); return; }
    document.querySelectorAll('audio').forEach(other => { if (other !== player) other.pause(); });
    player.play();
  };
  for (const clip of clips) {
    show(clip);
    clip.addEventListener('click', () => select(clip));
    clip.querySelector('audio')?.addEventListener('play', () => select(clip));
    clip.querySelectorAll('button.star')
      .forEach(b => b.addEventListener('click', () => save(clip, {rating: Number(b.value)})));
    clip.querySelector('button.keep').addEventListener('click', () => toggleKeep(clip, true));
    clip.querySelector('button.discard').addEventListener('click', () => toggleKeep(clip, false));
    clip.querySelector('input.note').addEventListener('change', () => save(clip, {}));
  }
  document.addEventListener('keydown', event => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches('input, textarea, select')) {
      if (event.key === 'Escape' || event.key === 'Enter') event.target.blur();
      return;
    }
    const key = event.key;
    if (!current && ['n', 'p', 'ArrowDown', 'ArrowUp'].includes(key)) { move(0); event.preventDefault(); return; }
    if (['n', 'ArrowDown'].includes(key)) { move(1); event.preventDefault(); return; }
    if (['p', 'ArrowUp'].includes(key)) { move(-1); event.preventDefault(); return; }
    if (!current) move(0);
    if (!current) return;
    if (key === ' ') { playPause(current); event.preventDefault(); }
    else if (/^[1-5]$/.test(key)) save(current, {rating: Number(key)});
    else if (key === 'k') toggleKeep(current, true);
    else if (key === 'x') toggleKeep(current, false);
    else if (key === 'e') { current.querySelector('input.note').focus(); event.preventDefault(); }
  });
  window.musicsweepPending = () => Promise.all(queues.values());
})();
"""


def swept_values(clips: list[Clip]) -> dict[str, list[str]]:
    """Axis -> its values (shown form, sorted), for every axis with more than one value; prompt first."""
    raw: dict[str, dict[str, object]] = {}
    for clip in clips:
        raw.setdefault("prompt", {})[clip.prompt] = clip.prompt
        for key, value in clip.axes.items():
            raw.setdefault(key, {})[format_value(value)] = value
    return {
        key: sorted(values, key=lambda shown, values=values: value_sort_key(values[shown]))
        for key, values in raw.items()
        if len(values) > 1
    }


def clip_axes_json(clip: Clip) -> str:
    shown = {key: format_value(value) for key, value in clip.axes.items()}
    return json.dumps({"prompt": clip.prompt, **shown}, sort_keys=True)


def filters_html(clips: list[Clip]) -> str:
    selects = []
    for key, values in swept_values(clips).items():
        options = f'<option value="">any {escape(key)}</option>' + "".join(
            f'<option value="{escape(v)}">{escape(v)}</option>' for v in values
        )
        selects.append(f'<label>{escape(key)} <select name="{escape(key)}">{options}</select></label>')
    ratings = "".join(f'<option value="{escape(v)}">{escape(text)}</option>' for v, text in RATING_FILTERS)
    selects.append(f'<label>rating <select name="_rating">{ratings}</select></label>')
    return f'<form class="filters" aria-label="filters">{"".join(selects)}<output></output></form>'


def verdict_attributes(verdict: ClipVerdict | None) -> str:
    mean = verdict.mean_rating if verdict else None
    keep = "discarded" if verdict and verdict.discarded else "kept" if verdict and verdict.kept else ""
    return f' data-rating="{"" if mean is None else f"{mean:g}"}" data-keep="{keep}"'


def readonly_ratings_html(verdict: ClipVerdict | None) -> str:
    if verdict is None:
        return ""
    lines = []
    for rating in verdict.ratings:
        parts = [f'<span class="who">{escape(rating.rater)}</span>']
        if rating.rating is not None:
            parts.append(f"{'★' * rating.rating}{'☆' * (5 - rating.rating)} {rating.rating}/5")
        if rating.keep is not None:
            parts.append("kept" if rating.keep else "discarded")
        if rating.note:
            parts.append(f"“{escape(rating.note)}”")
        lines.append(f'<p class="ratings">{" · ".join(parts)}</p>')
    return "".join(lines)


def rate_controls_html(own: Rating | None) -> str:
    stars = "".join(
        f'<button type="button" class="star" value="{n}" title="rate {n} (key {n})">{n}</button>' for n in range(1, 6)
    )
    note = escape(own.note) if own else ""
    return (
        f'<fieldset class="rate">{stars}<button type="button" class="keep" title="keep (key k)">keep</button>'
        '<button type="button" class="discard" title="discard (key x)">discard</button>'
        f'<input class="note" maxlength="500" placeholder="note (key e)" value="{note}" aria-label="note">'
        '<span class="saved" role="status"></span></fieldset>'
    )


def ab_results_html(results: list[AxisResults]) -> str:
    """One table per axis: each value's win rate with its Wilson interval, Bradley–Terry strength and rank."""
    if not results:
        return ""
    tables = []
    for axis in results:
        rows = "".join(
            f"<tr><td>{rank}</td><td>{escape(v.value)}</td><td>{v.wins}</td><td>{v.losses}</td><td>{v.ties}</td>"
            f"<td>{'-' if v.win_rate is None else f'{v.win_rate:.0%}'}</td>"
            f"<td>{'-' if not v.decisive else f'{v.interval[0]:.0%}–{v.interval[1]:.0%}'}</td>"
            f"<td>{'-' if v.strength is None else f'{v.strength:.3f}'}</td></tr>"
            for rank, v in enumerate(axis.values, start=1)
        )
        note = f'<p class="note">{escape(axis.note)}</p>' if axis.note else ""
        tables.append(
            f'<table class="ab" data-axis="{escape(axis.axis)}"><caption>blind A/B on {escape(axis.axis)}: '
            f"{axis.choices} choice(s)</caption><thead><tr><th>rank</th><th>{escape(axis.axis)}</th><th>wins</th>"
            "<th>losses</th><th>same</th><th>win rate</th><th>95% interval (Wilson)</th><th>Bradley–Terry</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>{note}"
        )
    return '<section class="ab-results"><h2>Blind A/B results</h2>' + "".join(tables) + "</section>"


def problems_html(problems: list[str]) -> str:
    if not problems:
        return ""
    return "".join(f'<p class="problems">{escape(problem)}</p>' for problem in problems)


def curation_extras(sweep_root: Path, clips: list[Clip], rater: str | None) -> PageExtras:
    """The page's curation parts: read-only when `rater` is None, else that rater's controls and script."""
    ids = {clip.job_id for clip in clips}
    latest, problems = latest_ratings(sweep_root, ids)
    choices, ab_problems = read_choices(sweep_root)
    everyone = verdicts(latest)
    parts, attributes = {}, {}
    for clip in clips:
        verdict = everyone.get(clip.job_id)
        axes = f" data-axes='{escape(clip_axes_json(clip))}'"
        if rater is None or clip.state != DONE:
            attributes[clip.job_id] = axes + verdict_attributes(verdict)
            parts[clip.job_id] = readonly_ratings_html(verdict)
            continue
        own = latest.get((clip.job_id, rater))
        keep = "" if own is None or own.keep is None else ("kept" if own.keep else "discarded")
        rating = "" if own is None or own.rating is None else str(own.rating)
        attributes[clip.job_id] = axes + f' data-clip="{escape(clip.job_id)}" data-rating="{rating}" data-keep="{keep}"'
        parts[clip.job_id] = rate_controls_html(own)
    keys = ""
    if rater is not None:
        keys = (
            f'<p class="keys">Rating as <b>{escape(rater)}</b>. Keys: <kbd>n</kbd>/<kbd>p</kbd> next/previous clip, '
            "<kbd>space</kbd> play/pause, <kbd>1</kbd>–<kbd>5</kbd> rate, <kbd>k</kbd> keep, <kbd>x</kbd> discard, "
            "<kbd>e</kbd> edit the note (<kbd>Enter</kbd> saves it). Every change is saved at once.</p>"
        )
    header = problems_html(problems + ab_problems) + ab_results_html(axis_results(choices)) + keys + filters_html(clips)
    script = FILTER_SCRIPT + (RATE_SCRIPT if rater is not None else "")
    return PageExtras(
        head=f"<style>{STYLE}</style>\n", header=header, clip_parts=parts, clip_attributes=attributes, script=script
    )


def static_extras(sweep_root: Path, clips: list[Clip]) -> PageExtras:
    return curation_extras(sweep_root, clips, rater=None)
