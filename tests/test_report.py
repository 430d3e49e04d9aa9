"""The listening report: a real tiny sweep and a crafted one, opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from musicsweep import VariantGenerator, run_sweep
from musicsweep.cli.pull import main as auto_pull_main
from musicsweep.cli.report import main
from musicsweep.layout import SweepDir
from musicsweep.report.build import first_error_line, write_report
from musicsweep.report.grid import build_grid
from tests.synthetic_sweep import RATE, FakeClip, music_like, write_synthetic_sweep

TRACEBACK = """Traceback (most recent call last):
  File "/opt/musicsweep/worker.py", line 12, in run_batch
    clips = engine.generate(prompts)
ValueError: the decoder <blew> up & stopped
"""

LOAD_MEDIA = """
const done = arguments[arguments.length - 1];
const players = [...document.querySelectorAll('audio')];
Promise.all(players.map(player => new Promise(resolve => {
  const report = () => resolve({src: player.getAttribute('src'), ready: player.readyState,
                                error: player.error ? player.error.code : null, preload: player.preload});
  player.addEventListener('loadedmetadata', report, {once: true});
  player.addEventListener('error', report, {once: true});
  player.load();
}))).then(done);
"""


def check_page_in_browser(driver, page: Path, job_ids: list[str], screenshot: Path) -> list[dict]:
    """Open the page from disk: every clip listed, every image decoded, every player loadable."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    listed = driver.execute_script("return [...document.querySelectorAll('div.clip')].map(e => e.id)")
    assert sorted(listed) == sorted(f"clip-{job_id}" for job_id in job_ids)
    lazy = driver.execute_script("return [...document.images].map(i => i.getAttribute('loading'))")
    assert lazy and set(lazy) == {"lazy"}
    driver.execute_script("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    images = driver.execute_script("return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert all(width > 0 for _, width in images), images
    players = driver.execute_async_script(LOAD_MEDIA)
    assert len(players) == len(images)
    for player in players:
        assert player["preload"] == "none"
        assert player["error"] is None and player["ready"] >= 1, player
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    metrics = {"width": min(width, 4000), "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page in one shot
    driver.save_screenshot(str(screenshot))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert screenshot.stat().st_size > 10_000
    return players


def test_real_tiny_sweep_report_opens_in_chromium(project: Path, browser, tmp_path: Path) -> None:
    """End to end: generate with the tiny model, `auto_pull --report`, then listen from a copied folder."""
    generator = VariantGenerator()
    generator.add("prompt", ["warm lofi piano", 'drums <b>&</b> "bass"'])
    generator.add("duration_s", [2, 3])
    generator.add("seed", lambda duration_s: [duration_s * 7])
    run_sweep(generator, name="listen")
    assert auto_pull_main(["listen", "--report", "--interval", "1"]) == 0
    original = project / "runs" / "listen"
    assert (original / "report" / "index.html").exists()
    copied = tmp_path / "elsewhere" / "listen"
    shutil.copytree(original, copied)
    shutil.rmtree(original)
    page = copied / "report" / "index.html"
    job_ids = list(json.loads((copied / "manifest.json").read_text())["jobs"])
    check_page_in_browser(browser, page, job_ids, tmp_path / "real_sweep.png")
    html = page.read_text()
    assert "drums &lt;b&gt;&amp;&lt;/b&gt; &quot;bass&quot;" in html
    assert '<th scope="col">duration_s 2</th>' in html and "seed" not in html.split("<tbody>")[0].split("<table")[1]
    assert "every pulled clip passed" in html


def crafted_clips() -> list[FakeClip]:
    """Model x duration for two prompts, with one clip per kind of trouble."""
    hostile = "<script>alert('x')</script> & friends"

    def variant(prompt: str, model: str, duration: float) -> dict:
        return {"prompt": prompt, "duration_s": duration, "model": model, "seed": 1}

    noisy = music_like(2.0, 3)
    noisy[100:200] = np.nan
    return [
        FakeClip(variant(hostile, "tiny", 2)),
        FakeClip(variant(hostile, "tiny", 3), samples=np.zeros(3 * RATE)),
        FakeClip(variant(hostile, "small", 2), samples=np.clip(4 * music_like(2.0, 1), -1, 1)),
        FakeClip(variant(hostile, "small", 3), samples=music_like(2.5, 2)),
        FakeClip(variant("calm harp", "tiny", 2), samples=noisy, subtype="FLOAT"),
        FakeClip(variant("calm harp", "tiny", 3), state="failed", error=TRACEBACK),
        FakeClip(variant("calm harp", "small", 2), state="unfinished"),
    ]


@pytest.fixture
def crafted(tmp_path: Path) -> SweepDir:
    return write_synthetic_sweep(tmp_path / "runs", "crafted", crafted_clips())


def clip_html(html: str, job_id: str) -> str:
    start = html.index(f'id="clip-{job_id}"')
    return html[start : html.index("</div>", start)]


def test_crafted_sweep_report(crafted: SweepDir, browser, tmp_path: Path) -> None:
    page = write_report(crafted, workers=2)
    assert page == crafted.root / "report" / "index.html"
    html = page.read_text()
    manifest = json.loads(crafted.manifest.read_text())
    ids = {(e["prompt"][:4], e["model"], e["duration_s"]): job_id for job_id, e in manifest["jobs"].items()}

    assert "<script>alert(" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in html
    head = html.split("<tbody>")[0]
    columns = re.findall(r'<th scope="col">([^<]*)</th>', head)
    assert columns == ["prompt", "duration_s 2 · model small", "duration_s 2 · model tiny"] + [
        "duration_s 3 · model small",
        "duration_s 3 · model tiny",
    ]
    assert html.count('<td class="empty">') == 1  # calm harp has no small/3 clip

    assert "too short: 2.500 s, 3 s requested" in clip_html(html, ids[("<scr", "small", 3.0)])
    assert "clipped: peak" in clip_html(html, ids[("<scr", "small", 2.0)])
    assert "silent: RMS -inf dBFS" in clip_html(html, ids[("<scr", "tiny", 3.0)])
    assert "NaN: " in clip_html(html, ids[("calm", "tiny", 2.0)])
    assert '<ul class="flags">' not in clip_html(html, ids[("<scr", "tiny", 2.0)])
    failed = clip_html(html, ids[("calm", "tiny", 3.0)])
    assert 'data-state="failed"' in failed and "ValueError: the decoder &lt;blew&gt; up &amp; stopped" in failed
    assert "Traceback" not in html and "<audio" not in failed
    assert 'data-state="not finished"' in clip_html(html, ids[("calm", "small", 2.0)])

    summary = html.split("<main>")[0]
    for flag in ("NaN", "clipped", "silent", "too short"):
        assert f"<li>{flag}: 1 clip(s): " in summary
    assert '<a href="../cost_report.csv">cost_report.csv</a>' in summary
    assert "7 (5 done, 1 failed, 1 not finished)" in summary
    assert "$0.010000 (worker lifetimes x hourly rate)" in summary  # 72 s at $0.50/h
    minutes = (2 + 3 + 2 + 2.5 + 2) / 60
    assert f"<dd>{minutes:.2f}</dd>" in summary and f"${0.01 / minutes:.6f}" in summary

    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(not re.match(r"^(/|[a-z]+:)", link) for link in links), links
    assert html.count('preload="none"') == html.count("<audio") == 5
    assert html.count('loading="lazy"') == html.count("<img") == 5

    done_ids = list(manifest["jobs"])
    check_page_in_browser(browser, page, done_ids, tmp_path / "crafted.png")


def test_rerun_redraws_only_changed_clips(crafted: SweepDir) -> None:
    write_report(crafted, workers=1)
    images = sorted((crafted.report_dir / "img").glob("*.png"))
    assert len(images) == 5
    before = {path: path.stat().st_mtime_ns for path in images}
    wav = sorted(crafted.audio.glob("*.wav"))[0]
    later = max(before.values()) + 1_000_000_000
    os.utime(wav, ns=(later, later))
    write_report(crafted, workers=1)
    changed = [path for path in images if path.stat().st_mtime_ns != before[path]]
    assert [path.stem for path in changed] == [wav.stem]


def test_corrupt_wav_is_flagged_not_fatal(crafted: SweepDir) -> None:
    wav = sorted(crafted.audio.glob("*.wav"))[0]
    wav.write_bytes(b"RIFF not really a wav")
    html = write_report(crafted, workers=1).read_text()
    assert "unreadable audio: " in html and "<li>unreadable: 1 clip(s)" in html


def test_cost_summary_json_gives_the_paid_cost(crafted: SweepDir) -> None:
    crafted.cost_summary.write_text(json.dumps({"paid_usd": 1.25}))
    html = write_report(crafted, workers=1).read_text()
    assert "$1.25 (cost_summary.json)" in html


def test_main_names_the_missing_sweep(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["no-such-sweep"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no-such-sweep/manifest.json: no such sweep" in error


def test_main_rejects_a_bad_manifest_before_writing(crafted: SweepDir, capsys: pytest.CaptureFixture) -> None:
    manifest = json.loads(crafted.manifest.read_text())
    job_id = next(iter(manifest["jobs"]))
    del manifest["jobs"][job_id]["output_name"]
    crafted.manifest.write_text(json.dumps(manifest))
    assert main([str(crafted.root)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {crafted.manifest}: key 'jobs.{job_id}.output_name': missing"
    assert not crafted.report_dir.exists()


def test_main_accepts_a_sweep_folder_path(crafted: SweepDir, capsys: pytest.CaptureFixture) -> None:
    assert main([str(crafted.root), "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "audio checks: 4 clip(s) flagged (1 NaN, 1 clipped, 1 silent, 1 too short); see the report",
        f"report: {crafted.report_dir / 'index.html'}",
    ]
    assert main([str(crafted.root), "--workers", "0"]) == 2


def test_main_defaults_to_the_latest_sweep(project: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = write_synthetic_sweep(project / "runs", "only", [FakeClip({"prompt": "rain", "duration_s": 2})])
    assert main(["--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "audio checks: every pulled clip passed",
        f"report: {sweep.report_dir / 'index.html'}",
    ]


def test_error_lines_never_show_a_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "test-secret-report-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    error = f"botocore.exceptions.ClientError: signature for {secret} does not match\n"
    clip = FakeClip({"prompt": "rain", "duration_s": 2}, state="failed", error=error)
    html = write_report(write_synthetic_sweep(tmp_path / "runs", "leak", [clip])).read_text()
    assert secret not in html and "signature for [redacted] does not match" in html


def test_grid_model_by_duration() -> None:
    items = [(p, {"duration_s": d, "model": m}) for p in ("b", "a") for m in ("tiny", "small") for d in (10.0, 5.0)]
    grid = build_grid(items)
    assert grid.prompts == ["a", "b"]
    assert [grid.label(c) for c in grid.columns] == [
        "duration_s 5 · model small",
        "duration_s 5 · model tiny",
        "duration_s 10 · model small",
        "duration_s 10 · model tiny",
    ]
    assert all(len(indices) == 1 for indices in grid.cells.values())


def test_grid_hides_axes_that_follow_the_prompt_or_other_axes() -> None:
    """prompts.txt shape: duration and file name follow the prompt; a seed derived from duration."""
    rows = [("rain", 5.0, "rain"), ("wind", 8.0, "wind")]
    items = [(p, {"duration_s": d, "file_name": f, "row": f"Row({p})", "seed": 0}) for p, d, f in rows]
    grid = build_grid(items)
    assert grid.axes == [] and [grid.label(c) for c in grid.columns] == ["clip"]
    assert grid.row_notes == {"rain": "duration_s 5", "wind": "duration_s 8"}
    derived = build_grid([("p", {"duration_s": d, "seed": int(d * 7)}) for d in (2.0, 3.0)])
    assert derived.axes == ["duration_s", "seed"] and derived.label_axes == ["duration_s"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (TRACEBACK, "ValueError: the decoder <blew> up & stopped"),
        ("CUDA out of memory\nmore detail\n", "CUDA out of memory"),
        ("", "(no error text)"),
    ],
)
def test_first_error_line(text: str, line: str) -> None:
    assert first_error_line(text) == line


def test_missing_report_extra_is_one_clear_error(crafted: SweepDir, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([str(crafted.root)]) == 2
    fix = "uv sync --extra report, or pip install '.[report]' in a checkout"
    assert capsys.readouterr().err == f"error: the report needs matplotlib: {fix}\n"
    assert not crafted.report_dir.exists()
