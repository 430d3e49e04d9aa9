"""The blind A/B page. It holds no clip name and no value of the axis: the script asks the server
for a pair of opaque audio URLs, and only the answer to a choice says which value was which."""

from __future__ import annotations

from html import escape

from musicsweep.curate.page import STYLE as CURATION_STYLE
from musicsweep.report.html import STYLE as REPORT_STYLE

STYLE = """
main.ab { max-width: 48em; }
div.sides { display: flex; gap: 2em; margin: 1em 0; }
div.side { flex: 1; background: #fff; border: 1px solid #cbd5e0; padding: 1em; border-radius: 4px; }
div.side h2 { margin: 0 0 .4em; }
div.side audio { width: 100%; }
div.side.playing { outline: 3px solid #2b6cb0; }
#reveal { font-weight: 600; min-height: 1.5em; }
#results:empty { display: none; }
"""

SCRIPT = """
(() => {
  const base = '/' + location.pathname.split('/')[1] + '/';
  const players = {a: document.getElementById('player-a'), b: document.getElementById('player-b')};
  const reveal = document.getElementById('reveal');
  const results = document.getElementById('results');
  const count = document.getElementById('count');
  let pair = null, judged = false, busy = false, loading = Promise.resolve();
  const post = async (path, body) => {
    const response = await fetch(base + path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                               body: JSON.stringify(body || {})});
    const text = await response.text();
    if (!response.ok) throw new Error(text.trim());
    return JSON.parse(text);
  };
  const next = () => {
    if (busy) return loading;
    busy = true;
    loading = (async () => {
      try {
        reveal.textContent = '';
        results.replaceChildren();
        for (const side of ['a', 'b']) players[side].pause();
        pair = await post('api/ab/next');
        judged = false;
        players.a.src = pair.a;
        players.b.src = pair.b;
        document.getElementById('prompt').textContent = pair.prompt;
        count.textContent = String(pair.choices);
        document.body.dataset.state = 'listening';
      } catch (error) { reveal.textContent = 'error: ' + error.message; }
      busy = false;
    })();
    return loading;
  };
  const choose = async choice => {
    if (!pair || judged || busy) return;
    busy = true;
    try {
      const answer = await post('api/ab/choice', {pair: pair.pair, choice});
      judged = true;
      const picked = {a: 'A', b: 'B', same: 'no difference'}[choice];
      reveal.textContent = `You chose ${picked}. A was ${answer.axis} ${answer.a}, B was ${answer.axis} ${answer.b}. ` +
                           'Press n for the next pair.';
      count.textContent = String(answer.choices);
      document.body.dataset.state = 'revealed';
    } catch (error) { reveal.textContent = 'error: ' + error.message; }
    busy = false;
  };
  const play = side => {
    const player = players[side], other = players[side === 'a' ? 'b' : 'a'];
    other.pause();
    if (player.paused) player.play(); else player.pause();
  };
  const showResults = async () => {
    await loading;  // a pair still loading (n, then r at once) would take the page back from the results
    const response = await fetch(base + 'api/ab/results');
    results.innerHTML = await response.text();
    document.body.dataset.state = 'results';
  };
  for (const side of ['a', 'b']) {
    players[side].addEventListener('play', () => document.getElementById('side-' + side).classList.add('playing'));
    players[side].addEventListener('pause', () => document.getElementById('side-' + side).classList.remove('playing'));
  }
  document.querySelectorAll('button[data-choice]')
    .forEach(b => b.addEventListener('click', () => choose(b.dataset.choice)));
  document.getElementById('next').addEventListener('click', next);
  document.getElementById('show-results').addEventListener('click', showResults);
  document.addEventListener('keydown', event => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (['a', 'b', 's'].includes(key)) choose(key === 's' ? 'same' : key);
    else if (key === '1' || key === '2') play(key === '1' ? 'a' : 'b');
    else if (key === ' ') { event.preventDefault(); play(!players.b.paused ? 'b' : 'a'); }
    else if (key === 'n' && (judged || !pair)) next();
    else if (key === 'r') showResults();
  });
  next();
})();
"""


def blind_page(sweep_name: str, axis: str, rater: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<link rel="icon" href="data:,">\n'
        f"<title>{escape(sweep_name)}: blind A/B on {escape(axis)}</title>\n"
        f"<style>{REPORT_STYLE}{CURATION_STYLE}{STYLE}</style>\n</head>\n<body>\n"
        f'<main class="ab"><h1>Blind A/B: {escape(axis)}</h1>\n'
        f"<p>Sweep <b>{escape(sweep_name)}</b>, listening as <b>{escape(rater)}</b>. Two clips differ only in "
        f"{escape(axis)}; which value each has stays hidden until you choose. Choices so far: "
        '<b id="count">0</b>.</p>\n'
        '<p>Prompt: <span id="prompt"></span></p>\n<div class="sides">'
        '<div class="side" id="side-a"><h2>A</h2><audio id="player-a" controls preload="auto"></audio></div>'
        '<div class="side" id="side-b"><h2>B</h2><audio id="player-b" controls preload="auto"></audio></div></div>\n'
        '<p><button type="button" data-choice="a">A is better (a)</button> '
        '<button type="button" data-choice="b">B is better (b)</button> '
        '<button type="button" data-choice="same">same (s)</button> '
        '<button type="button" id="next">next pair (n)</button> '
        '<button type="button" id="show-results">show results (r)</button></p>\n'
        '<p class="keys">Keys: <kbd>1</kbd>/<kbd>2</kbd> play A/B, <kbd>space</kbd> play/pause, <kbd>a</kbd>, '
        "<kbd>b</kbd> or <kbd>s</kbd> to choose, <kbd>n</kbd> next pair, <kbd>r</kbd> results "
        "(they name the values: look at them when you are done).</p>\n"
        '<p id="reveal" role="status"></p>\n<div id="results"></div>\n</main>\n'
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
