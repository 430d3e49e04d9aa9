"""`musicsweep report --serve` over real HTTP on 127.0.0.1: the token, the Host check, only this
sweep's files, one-line 400s that write nothing, and concurrent raters losing nothing."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from musicsweep.curate.ratings import RATINGS_FILE
from musicsweep.curate.server import CurationServer, open_server
from musicsweep.layout import SweepDir
from tests.synthetic_sweep import FakeClip, write_synthetic_sweep

GUIDANCE = (1.5, 3.25, 7.75)


def ab_clips(prompt: str = "rain on a tin roof") -> list[FakeClip]:
    """Three guidance values x two seeds, 1 s each: three fair pairs per seed."""
    return [
        FakeClip({"prompt": prompt, "duration_s": 1, "guidance_scale": g, "seed": seed})
        for g in GUIDANCE
        for seed in (11, 12)
    ]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepDir, SweepDir]:
    """Drawn once for the module (images cost a second or two); each test starts with no journals."""
    runs = tmp_path_factory.mktemp("curation-server") / "runs"
    return write_synthetic_sweep(runs, "rated", ab_clips()), write_synthetic_sweep(runs, "other", ab_clips("snow"))


@pytest.fixture(scope="module")
def module_server(sweeps: tuple[SweepDir, SweepDir]) -> Iterator[CurationServer]:
    running = open_server(sweeps[0], "ann", None, workers=1)
    running.start_in_thread()
    yield running
    running.shutdown()
    running.server_close()


@pytest.fixture
def server(module_server: CurationServer, sweeps: tuple[SweepDir, SweepDir]) -> CurationServer:
    for name in (RATINGS_FILE, "ab.jsonl"):
        (sweeps[0].root / name).unlink(missing_ok=True)
    return module_server


def request(
    server: CurationServer, method: str, path: str, body: object = None, host: str | None = None
) -> tuple[int, bytes]:
    """One raw request, path sent exactly as given (no client-side normalising of `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Host": f"127.0.0.1:{server.port}" if host is None else host}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(len(data or b""))}.items():
        connection.putheader(name, value)
    connection.endheaders(data)
    response = connection.getresponse()
    try:
        return response.status, response.read()
    finally:
        connection.close()


def job_ids(sweep: SweepDir) -> list[str]:
    return list(json.loads(sweep.manifest.read_text())["jobs"])


def test_page_and_files_need_the_token(server: CurationServer, sweeps, caplog) -> None:
    token = server.curation.token
    status, page = request(server, "GET", f"/{token}/")
    assert status == 200 and page.count(b"data-clip=") == 6 and f'<base href="/{token}/report/">'.encode() in page
    wav = sorted(sweeps[0].audio.glob("*.wav"))[0]
    assert request(server, "GET", f"/{token}/audio/{wav.name}") == (200, wav.read_bytes())
    image = sorted((sweeps[0].report_dir / "img").glob("*.png"))[0]
    assert request(server, "GET", f"/{token}/report/img/{image.name}") == (200, image.read_bytes())
    caplog.set_level(logging.WARNING, logger="musicsweep.curate.server")
    refused = [
        ("/", 403),
        (f"/{token[:-1]}x/", 403),
        (f"/x{token}/audio/{wav.name}", 403),
        (f"/audio/{wav.name}", 403),
        (f"/{token}/../{token}/manifest.json", 404),
        (f"/{token}/manifest.json", 404),
        (f"/{token}/ratings.jsonl", 404),
        (f"/{token}/audio/../manifest.json", 404),
        (f"/{token}/audio/..%2fmanifest.json", 404),
        (f"/{token}/audio/%2e%2e/%2e%2e/other/manifest.json", 404),
        (f"/{token}/../other/audio/{sorted(sweeps[1].audio.glob('*.wav'))[0].name}", 404),
        (f"/{token}/audio/{sorted(sweeps[1].audio.glob('*.wav'))[0].name}", 404),
        (f"/{token}/report/index.html", 404),
        (f"/{token}//etc/passwd", 404),
        (f"/{token}/api/ab/next", 404),
    ]
    for path, expected in refused:
        status, body = request(server, "GET", path)
        assert status == expected, path
        assert body.count(b"\n") == 1 and b"rain" not in body
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == len(refused)
    assert all(token not in warning and warning.startswith("refused GET ") for warning in warnings)
    assert "wrong or missing token" in warnings[0] and "not a file of this sweep" in warnings[-1]


def test_a_foreign_host_header_is_refused(server: CurationServer, caplog) -> None:
    token = server.curation.token
    caplog.set_level(logging.WARNING, logger="musicsweep.curate.server")
    for host in ("evil.example:80", f"evil.example:{server.port}", f"192.168.1.7:{server.port}", ""):
        assert request(server, "GET", f"/{token}/", host=host)[0] == 403
    assert request(server, "GET", f"/{token}/", host=f"localhost:{server.port}")[0] == 200
    assert sum("is not this loopback server" in record.getMessage() for record in caplog.records) == 4


def test_bad_ratings_are_400_and_write_nothing(server: CurationServer, sweeps) -> None:
    token, clip = server.curation.token, job_ids(sweeps[0])[0]
    cases = [
        ({"clip": clip, "rating": 6}, b"rating must be a whole number from 1 to 5, got '6'\n"),
        ({"clip": clip, "rating": 0}, b"rating must be a whole number from 1 to 5, got '0'\n"),
        ({"clip": "0123456789abcdef", "rating": 3}, b"unknown clip '0123456789abcdef'\n"),
        ({"clip": job_ids(sweeps[1])[0], "rating": 3}, f"unknown clip '{job_ids(sweeps[1])[0]}'\n".encode()),
        ({"clip": clip, "note": "n" * 501}, b"note is 501 characters; at most 500\n"),
        (b"{not json", None),
        (b"x" * 9000, b"request body is 9000 bytes; at most 8192\n"),
    ]
    for body, reason in cases:
        status, answer = request(server, "POST", f"/{token}/api/rate", body)
        assert status == 400 and answer.count(b"\n") == 1
        if reason is not None:
            assert answer == reason
    assert not (sweeps[0].root / RATINGS_FILE).exists()
    assert request(server, "POST", f"/{token[::-1]}/api/rate", {"clip": clip, "rating": 3})[0] == 403
    assert not (sweeps[0].root / RATINGS_FILE).exists()


def test_two_tabs_rating_at_once_lose_nothing(server: CurationServer, sweeps) -> None:
    token, clips = server.curation.token, job_ids(sweeps[0])
    bodies = [{"clip": clips[i % len(clips)], "rating": 1 + i % 5, "note": f"tab {i % 2} #{i}"} for i in range(120)]
    with ThreadPoolExecutor(max_workers=2) as tabs:
        statuses = list(tabs.map(lambda body: request(server, "POST", f"/{token}/api/rate", body)[0], bodies))
    assert statuses == [200] * 120
    lines = (sweeps[0].root / RATINGS_FILE).read_text().splitlines()
    assert sorted(json.loads(line)["note"] for line in lines) == sorted(body["note"] for body in bodies)


def test_blind_mode_serves_no_named_file(server: CurationServer, sweeps) -> None:
    running = open_server(sweeps[0], "ann", "guidance_scale", workers=1)
    running.start_in_thread()
    try:
        token = running.curation.token
        wav = sorted(sweeps[0].audio.glob("*.wav"))[0]
        assert request(running, "GET", f"/{token}/audio/{wav.name}")[0] == 404
        assert request(running, "POST", f"/{token}/api/rate", {"clip": job_ids(sweeps[0])[0], "rating": 3})[0] == 404
        status, answer = request(running, "POST", f"/{token}/api/ab/next", {})
        pair = json.loads(answer)
        assert status == 200 and set(pair) == {"pair", "a", "b", "prompt", "choices"}
        for value in GUIDANCE:
            assert str(value).encode() not in answer
        assert request(running, "GET", f"/{token}/{pair['a']}") == (200, _blind_bytes(running, pair["a"]))
        assert request(running, "POST", f"/{token}/api/ab/choice", {"pair": pair["pair"], "choice": "c"}) == (
            400,
            b"choice must be one of a, b, same, got 'c'\n",
        )
        assert not (sweeps[0].root / "ab.jsonl").exists()
        status, answer = request(running, "POST", f"/{token}/api/ab/choice", {"pair": pair["pair"], "choice": "same"})
        assert status == 200 and json.loads(answer)["axis"] == "guidance_scale"
        assert request(running, "POST", f"/{token}/api/ab/choice", {"pair": pair["pair"], "choice": "a"}) == (
            400,
            b"unknown or already judged pair\n",
        )
        assert len((sweeps[0].root / "ab.jsonl").read_text().splitlines()) == 1
    finally:
        running.shutdown()
        running.server_close()


def _blind_bytes(running: CurationServer, url: str) -> bytes:
    return running.curation.blind.audio(url.removeprefix("blind/")).read_bytes()


def test_a_busy_port_is_one_line_error(server: CurationServer, sweeps, capsys) -> None:
    from musicsweep.cli.report import main

    assert main([str(sweeps[1].root), "--serve", "--port", str(server.port)]) == 2
    assert (
        capsys.readouterr().err == f"error: --port {server.port}: cannot listen on 127.0.0.1: Address already in use\n"
    )


def test_an_axis_without_fair_pairs_is_one_line_error(tmp_path: Path, capsys) -> None:
    from musicsweep.cli.report import main

    sweep = write_synthetic_sweep(tmp_path / "runs", "s", ab_clips()[:1])
    assert main([str(sweep.root), "--serve", "--ab", "temperature", "--workers", "1"]) == 2
    assert capsys.readouterr().err == (
        "error: --ab 'temperature': not an axis of this sweep (axes: duration_s, guidance_scale, model, seed)\n"
    )
    assert not sweep.report_dir.exists()
    assert main([str(sweep.root), "--serve", "--ab", "seed", "--workers", "1"]) == 2
    assert capsys.readouterr().err == "error: --ab 'seed': no two pulled clips differ only on seed\n"
    assert main([str(sweep.root), "--ab", "seed"]) == 2
    assert capsys.readouterr().err == "error: --ab, --rater and --port go with --serve\n"


@pytest.mark.e2e
def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    """The console script prints one URL with its token, answers on it, and stops cleanly on Ctrl-C."""
    sweep = write_synthetic_sweep(tmp_path / "runs", "s", ab_clips())
    musicsweep = Path(sys.executable).parent / "musicsweep"
    command = [str(musicsweep), "report", str(sweep.root), "--serve", "--workers", "1"]
    process = subprocess.Popen(
        [*command, "--rater", "cli-user"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A suite started in the background (`./scripts/test &`, nohup) ignores SIGINT, and a child
        # inherits that: Python would then never raise KeyboardInterrupt on the Ctrl-C sent below.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = iter(process.stdout.readline, "")
        line = next(line for line in lines if not line.startswith("audio checks: "))
        assert line.startswith("rating page for s (as cli-user): http://127.0.0.1:")
        url = urlsplit(line.split(": ", 1)[1].strip())
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        connection.request("GET", url.path)
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)  # drains both pipes: a full one would block its exit
        assert process.returncode == 0, errors


def test_ratings_survive_a_restart(server: CurationServer, sweeps) -> None:
    token, clip = server.curation.token, job_ids(sweeps[0])[0]
    assert request(server, "POST", f"/{token}/api/rate", {"clip": clip, "rating": 3, "note": "again"})[0] == 200
    restarted = open_server(sweeps[0], "ann", None, workers=1)
    restarted.start_in_thread()
    try:
        assert restarted.curation.token != token
        assert request(restarted, "GET", f"/{token}/")[0] == 403  # the old URL is dead
        status, page = request(restarted, "GET", f"/{restarted.curation.token}/")
        assert status == 200
        assert f'data-clip="{clip}" data-rating="3" data-keep=""'.encode() in page and b'value="again"' in page
    finally:
        restarted.shutdown()
        restarted.server_close()
