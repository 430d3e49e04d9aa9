"""Rating and blind A/B in a real headless Chromium against the real server on 127.0.0.1.

The A/B test reads Chrome's performance log (CDP Network events) to check that no value of the
axis reached the page, in the DOM or in any network answer, before each choice.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from musicsweep.curate.ratings import RATINGS_FILE
from musicsweep.curate.server import CurationServer, open_server
from musicsweep.curate.stats import wilson_interval
from musicsweep.layout import SweepDir
from musicsweep.report.build import write_report
from tests.fixtures.browser import chromium_driver
from tests.synthetic_sweep import FakeClip, write_synthetic_sweep

pytestmark = pytest.mark.e2e  # headless Chromium and the curation server

GUIDANCE = (2.125, 4.375, 6.625)  # texts that appear nowhere else on the page


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Chromium with the performance log on (CDP Network events), for this module only."""
    yield from chromium_driver(
        tmp_path_factory.mktemp("chromium-curation"), {"goog:loggingPrefs": {"performance": "ALL"}}
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepDir:
    """Two prompts x three guidance values x two seeds: 12 clips of 1 s, images drawn once."""
    clips = [
        FakeClip({"prompt": prompt, "duration_s": 1, "guidance_scale": g, "seed": seed})
        for prompt in ("warm lofi piano", "dark techno")
        for g in GUIDANCE
        for seed in (11, 12)
    ]
    sweep = write_synthetic_sweep(tmp_path_factory.mktemp("curation-browser") / "runs", "listen", clips)
    write_report(sweep, workers=1)
    return sweep


def serving(sweep: SweepDir, ab_axis: str | None) -> CurationServer:
    for name in (RATINGS_FILE, "ab.jsonl"):
        (sweep.root / name).unlink(missing_ok=True)
    server = open_server(sweep, "ann", ab_axis, workers=1)
    server.start_in_thread()
    return server


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def wait_for(driver, script: str, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def test_rate_three_clips_with_the_keyboard_then_reload(chrome, sweep: SweepDir) -> None:
    server = serving(sweep, None)
    try:
        chrome.get(server.url)
        ids = chrome.execute_script(
            "return [...document.querySelectorAll('div.clip[data-clip]')].map(c => c.dataset.clip)"
        )
        assert len(ids) == 12
        press(chrome, "n", " ")  # select the first clip and play it
        assert wait_for(
            chrome, "const a = document.querySelector('div.clip.current audio'); return a.currentTime > 0.05"
        )
        press(chrome, " ", "4", "n", "2", "k", "n", "5", "e")
        press(chrome, "bright, keep the hats", "\ue007")  # Enter saves the note
        chrome.execute_async_script("window.musicsweepPending().then(arguments[arguments.length - 1])")
        paused = chrome.execute_script(f"return document.querySelector('#clip-{ids[0]} audio').paused")
        assert paused
        records = [json.loads(line) for line in (sweep.root / RATINGS_FILE).read_text().splitlines()]
        # Each record is a clip's whole state, so only each clip's own order matters: requests for
        # different clips may reach the server in either order.
        per_clip: dict[str, list[tuple]] = {}
        for r in records:
            per_clip.setdefault(r["clip"], []).append((r["rating"], r["keep"], r["note"], r["rater"]))
        assert per_clip == {
            ids[0]: [(4, None, "", "ann")],
            ids[1]: [(2, None, "", "ann"), (2, True, "", "ann")],
            ids[2]: [(5, None, "", "ann"), (5, None, "bright, keep the hats", "ann")],
        }
        chrome.refresh()
        state = chrome.execute_script(
            "return [...document.querySelectorAll('div.clip[data-clip]')].slice(0, 4).map(c => ["
            "c.dataset.rating, c.dataset.keep, c.querySelector('input.note').value,"
            "[...c.querySelectorAll('button[aria-pressed=\"true\"]')].map(b => b.textContent)])"
        )
        assert state == [
            ["4", "", "", ["4"]],
            ["2", "kept", "", ["2", "keep"]],
            ["5", "", "bright, keep the hats", ["5"]],
            ["", "", "", []],
        ]
        chrome.execute_script(
            "const s = document.querySelector('select[name=_rating]'); s.value = '>=4';"
            "s.dispatchEvent(new Event('change', {bubbles: true}))"
        )
        shown = chrome.execute_script(
            "return [...document.querySelectorAll('div.clip')].filter(c => !c.hidden).map(c => c.dataset.clip)"
        )
        assert shown == [ids[0], ids[2]]
        chrome.execute_script("document.querySelector('select[name=_rating]').value = ''; window.musicsweepFilter()")
        chrome.save_screenshot(str(sweep.sweeps_dir.parent / "rating.png"))  # docs/images/ holds a copy
    finally:
        server.shutdown()
        server.server_close()
    html = write_report(sweep, workers=1).read_text()  # the static report: the same ratings, read-only
    assert "<fieldset" not in html and "api/rate" not in html
    assert html.count('<p class="ratings">') == 3 and "“bright, keep the hats”" in html
    assert f'id="clip-{ids[1]}"' in html and "★★☆☆☆ 2/5 · kept" in html


def network_answers(driver) -> list[tuple[str, str, str]]:
    """(url, headers, text body or '') of every response in the performance log since the last call."""
    answers = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.responseReceived":
            continue
        response = message["params"]["response"]
        body = ""
        if response.get("mimeType", "").startswith(("text/", "application/json")):
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": message["params"]["requestId"]})[
                "body"
            ]
        answers.append((response["url"], json.dumps(response.get("headers", {})), body))
    return answers


def assert_nothing_revealed(driver, answers: list[tuple[str, str, str]]) -> None:
    values = [str(value) for value in GUIDANCE]
    dom = driver.execute_script("return document.documentElement.outerHTML")
    assert not [value for value in values if value in dom]
    for url, headers, body in answers:
        assert not [value for value in values if value in url + headers + body], url
        if "/blind/" in url:
            assert re.search(r"/blind/[0-9a-f]{32}$", url), url


CHOICES = ["a", "b", "s", "a", "a", "b", "s", "b", "a", "a"]


def test_blind_ab_round_of_ten(chrome, sweep: SweepDir) -> None:
    server = serving(sweep, "guidance_scale")
    expected: dict[str, list[int]] = {}
    try:
        chrome.get_log("performance")
        chrome.get(server.url)
        for number, key in enumerate(CHOICES, start=1):
            wait_for(
                chrome,
                f"return document.body.dataset.state === 'listening' && "
                f"document.getElementById('count').textContent === '{number - 1}'",
            )
            wait_for(chrome, "return ['a', 'b'].every(s => document.getElementById('player-' + s).readyState >= 1)")
            answers = network_answers(chrome)
            assert [url.rsplit("/", 3)[-3:] for url, _, body in answers if body.startswith('{"pair"')] == [
                ["api", "ab", "next"]
            ]
            assert_nothing_revealed(chrome, answers)
            if number == 1:
                press(chrome, "1")
                assert wait_for(chrome, "return document.getElementById('player-a').currentTime > 0.05")
                press(chrome, "1")
            press(chrome, key)
            wait_for(chrome, "return document.body.dataset.state === 'revealed'")
            reveal = chrome.find_element("id", "reveal").text
            a, b = re.search(r"A was guidance_scale (\S+), B was guidance_scale (\S+)\.", reveal).groups()
            for value in (a, b):
                expected.setdefault(value, [0, 0, 0])
            if key == "s":
                expected[a][2] += 1
                expected[b][2] += 1
            else:
                winner, loser = (a, b) if key == "a" else (b, a)
                expected[winner][0] += 1
                expected[loser][1] += 1
            network_answers(chrome)  # the answer to the choice may name the values
            press(chrome, "n")
        wait_for(chrome, "return document.getElementById('count').textContent === '10'")
        press(chrome, "r")
        wait_for(chrome, "return document.body.dataset.state === 'results'")
        rows = chrome.execute_script(
            "return [...document.querySelectorAll('#results tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
        )
        chrome.save_screenshot(str(sweep.sweeps_dir.parent / "ab.png"))
    finally:
        server.shutdown()
        server.server_close()
    assert len((sweep.root / "ab.jsonl").read_text().splitlines()) == 10
    table = {row[1]: row for row in rows}
    assert set(table) == set(expected)
    for value, (wins, losses, ties) in expected.items():
        row = table[value]
        assert row[2:5] == [str(wins), str(losses), str(ties)]
        if wins + losses:
            low, high = wilson_interval(wins, wins + losses)
            assert row[5:7] == [f"{wins / (wins + losses):.0%}", f"{low:.0%}–{high:.0%}"]
    html = write_report(sweep, workers=1).read_text()
    assert '<table class="ab" data-axis="guidance_scale"><caption>blind A/B on guidance_scale: 10 choice(s)' in html


def test_results_asked_for_while_the_next_pair_loads_stay_shown(chrome, sweep: SweepDir) -> None:
    """`n` then `r` at once: the results answer first (the next pair is slowed here), and the pair
    arriving after them must not take the page back to listening (a fresh-clone run failed on it)."""
    server = serving(sweep, "guidance_scale")
    blind = server.curation.blind
    original = blind.next_pair
    asked = []

    def slowed(audio_dir):
        asked.append(audio_dir)
        if len(asked) > 1:  # the page's first pair comes at once, the next one late
            time.sleep(1.0)
        return original(audio_dir)

    blind.next_pair = slowed
    try:
        chrome.get(server.url)
        wait_for(chrome, "return document.body.dataset.state === 'listening'")
        first = chrome.execute_script("return document.getElementById('player-a').src")
        press(chrome, "a")
        wait_for(chrome, "return document.body.dataset.state === 'revealed'")
        press(chrome, "n", "r")
        wait_for(chrome, f"return document.getElementById('player-a').src !== {json.dumps(first)}")
        wait_for(chrome, "return document.body.dataset.state === 'results'")
        rows = chrome.execute_script("return document.querySelectorAll('#results tbody tr').length")
    finally:
        server.shutdown()
        server.server_close()
    assert len(asked) == 2 and rows == 2  # one choice between two guidance values: a row each
