"""`musicsweep report SWEEP --serve`: the listening page on 127.0.0.1, saving ratings or A/B choices.

Every URL starts with a random token printed once on the terminal; a request without it, with a
Host header other than this loopback address, or for anything but a file of this sweep's report is
refused (403/404) and logged with the token left out. Files are served from a table built at start
(each clip's WAV and image, the cost report), so no path from a request ever reaches the disk.
A bad rating is a 400 with a one-line reason, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import mimetypes
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from musicsweep.curate.ab import axis_results, check_axis, read_choices
from musicsweep.curate.blind import BlindSession
from musicsweep.curate.blind_page import blind_page
from musicsweep.curate.page import ab_results_html, curation_extras
from musicsweep.curate.ratings import check_rating, save_rating
from musicsweep.errors import MusicsweepError
from musicsweep.layout import AUDIO_DIR, SweepDir
from musicsweep.report.build import ReportData, collect_clips, prepare_report, write_static_page
from musicsweep.report.html import render_page
from musicsweep.report.model import DONE

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8192
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Curation:
    """What the server serves: the sweep's page and files, and where ratings or choices go."""

    def __init__(self, sweep: SweepDir, data: ReportData, rater: str, ab_axis: str | None) -> None:
        self.sweep, self.data, self.rater = sweep, data, rater
        self.token = secrets.token_urlsafe(24)
        self.listenable = {clip.job_id for clip in data.clips if clip.state == DONE}
        self.blind = None
        if ab_axis is not None:
            self.blind = BlindSession(sweep.root, ab_axis, check_axis(data.clips, ab_axis, sweep.audio), rater)
        self.files: dict[str, Path] = {}
        if self.blind is None:  # the blind page gets audio only through its opaque URLs
            for clip in data.clips:
                self.files[f"{AUDIO_DIR}/{clip.output_name}"] = sweep.audio / clip.output_name
                self.files[f"report/{clip.image_name}"] = sweep.report_dir / clip.image_name
            self.files["cost_report.csv"] = sweep.cost_report

    def page(self) -> str:
        if self.blind is not None:
            return blind_page(self.sweep.name, self.blind.axis, self.rater)
        extras = curation_extras(self.sweep.root, self.data.clips, self.rater)
        head = f'<base href="/{self.token}/report/">\n<link rel="icon" href="data:,">\n' + extras.head
        extras = dataclasses.replace(extras, head=head)
        return render_page(self.data.summary, self.data.grid, self.data.clips, extras)

    def rate(self, payload: Any) -> dict[str, Any]:
        rating = check_rating(payload, self.listenable, self.rater)
        save_rating(self.sweep.root, rating)
        return rating.to_record()

    def ab_results(self) -> str:
        records, _problems = read_choices(self.sweep.root)
        return ab_results_html(axis_results(records)) or "<p>No choices yet.</p>"


class Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class CurationHandler(BaseHTTPRequestHandler):
    server: CurationServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.handle_request("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.handle_request("POST")

    def handle_request(self, method: str) -> None:
        try:
            route = self.authorized_route()
            self.route(method, route)
        except Refused as refused:
            self.close_connection = True  # a body left unread must not be taken for the next request
            if refused.status in (HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND):
                logger.warning("refused %s %s (%s): %s", method, self.safe_path(), refused.status.value, refused.reason)
            self.send_text(refused.status, refused.reason)
        except MusicsweepError as error:
            self.close_connection = True
            self.send_text(HTTPStatus.BAD_REQUEST, " ".join(str(error).split()))

    def authorized_route(self) -> str:
        """The path after the token, once the Host header and the token are right."""
        curation = self.server.curation
        host = self.headers.get("Host", "")
        if host not in self.server.allowed_hosts:
            raise Refused(HTTPStatus.FORBIDDEN, f"Host {host[:80]!r} is not this loopback server")
        path = urlsplit(self.path).path
        token, _, rest = path.lstrip("/").partition("/")
        if not hmac.compare_digest(token.encode(), curation.token.encode()):
            raise Refused(HTTPStatus.FORBIDDEN, "wrong or missing token")
        return rest

    def route(self, method: str, route: str) -> None:
        curation = self.server.curation
        blind = curation.blind
        if method == "GET" and route == "":
            self.send_body(HTTPStatus.OK, curation.page().encode(), "text/html; charset=utf-8")
        elif method == "POST" and route == "api/rate" and blind is None:
            self.send_json(curation.rate(self.read_json()))
        elif method == "POST" and route == "api/ab/next" and blind is not None:
            self.read_json()
            self.send_json(blind.next_pair(curation.sweep.audio))
        elif method == "POST" and route == "api/ab/choice" and blind is not None:
            payload = self.read_json()
            if not isinstance(payload, dict):
                raise MusicsweepError("a choice must be a JSON object")
            self.send_json(blind.choose(payload.get("pair"), payload.get("choice")))
        elif method == "GET" and route == "api/ab/results" and blind is not None:
            self.send_body(HTTPStatus.OK, curation.ab_results().encode(), "text/html; charset=utf-8")
        elif method == "GET" and route.startswith("blind/") and blind is not None:
            path = blind.audio(route.removeprefix("blind/"))
            if path is None:
                raise Refused(HTTPStatus.NOT_FOUND, "no such clip")
            self.send_file(path, "audio/wav")
        elif method == "GET" and route in curation.files and curation.files[route].is_file():
            path = curation.files[route]
            self.send_file(path, mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        else:
            raise Refused(HTTPStatus.NOT_FOUND, "not a file of this sweep")

    def read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise MusicsweepError("Content-Length required")
        if int(length) > MAX_BODY_BYTES:
            raise MusicsweepError(f"request body is {length} bytes; at most {MAX_BODY_BYTES}")
        body = self.rfile.read(int(length))
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError as error:
            raise MusicsweepError(f"request body is not JSON: {error}") from None

    def send_json(self, payload: Any) -> None:
        self.send_body(HTTPStatus.OK, json.dumps(payload).encode(), "application/json")

    def send_text(self, status: HTTPStatus, text: str) -> None:
        self.send_body(status, (text.splitlines()[0] if text else status.phrase).encode() + b"\n", "text/plain")

    def send_file(self, path: Path, content_type: str) -> None:
        """The file, or the one byte range an audio element asks for when it seeks."""
        data = path.read_bytes()
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and (match[1] or match[2]):
            start = int(match[1]) if match[1] else max(0, len(data) - int(match[2]))
            end = min(len(data) - 1, int(match[2])) if match[1] and match[2] else len(data) - 1
            if start >= len(data) or start > end:
                self.send_body(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    b"",
                    content_type,
                    {"Content-Range": f"bytes */{len(data)}"},
                )
                return
            headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
            self.send_body(HTTPStatus.PARTIAL_CONTENT, data[start : end + 1], content_type, headers)
            return
        self.send_body(HTTPStatus.OK, data, content_type)

    def send_body(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Accept-Ranges": "bytes",
            **({"Connection": "close"} if self.close_connection else {}),
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def safe_path(self) -> str:
        """The request path with the token left out, for the log."""
        return self.path.replace(self.server.curation.token, "<token>")[:200]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        logger.debug("%s %s", self.address_string(), (format % args).replace(self.server.curation.token, "<token>"))


class CurationServer(ThreadingHTTPServer):
    """Bound to 127.0.0.1 on a free port; `url` is the one address that works."""

    daemon_threads = True
    curation: Curation  # set once the page is drawn: the port is bound first, so a busy one fails early

    def __init__(self, port: int = 0) -> None:
        try:
            super().__init__(("127.0.0.1", port), CurationHandler)
        except OSError as error:
            raise MusicsweepError(f"--port {port}: cannot listen on 127.0.0.1: {error.strerror or error}") from None
        self.port = self.server_address[1]
        self.allowed_hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.curation.token}/"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="curation-server", daemon=True)
        thread.start()
        return thread


def open_server(sweep: SweepDir, rater: str, ab_axis: str | None, workers: int | None, port: int = 0) -> CurationServer:
    """Bind the port, check --ab, then draw the report (images and the static page); nothing is served yet."""
    server = CurationServer(port)
    try:
        if ab_axis is not None:  # a bad --ab fails before any image is drawn
            check_axis(collect_clips(sweep, sweep.read_manifest()), ab_axis, sweep.audio)
        data = prepare_report(sweep, workers)
        server.curation = Curation(sweep, data, rater, ab_axis)
        write_static_page(sweep, data)
    except BaseException:
        server.server_close()
        raise
    return server
