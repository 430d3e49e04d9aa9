"""Run commands on SSH hosts with the plain `ssh`/`rsync` clients.

One function builds the ssh argv (`ssh_argv`); everything that talks to a host goes through
`run_ssh` or `rsync`, which retry connection failures with backoff and count every connection
they open (`CONNECTIONS`), so tests and benchmarks can prove a poll is one round trip per host.
Secrets never go in argv: pass them as `stdin` (see `env_exports`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from musicsweep.config import at_least
from musicsweep.errors import MusicsweepError

T = TypeVar("T")
SSH_FAILED = 255  # ssh's own exit status for connection and authentication errors
RSYNC_CONNECTION_FAILED = (12, 255)
# rsync's "some files vanished before they could be transferred": a file deleted or renamed
# during the copy (an editor's temp file, a worker's atomic write). What it copies is whole, and
# the next code sync or pull brings what is new, so this is not a failure.
RSYNC_VANISHED = 24
# Defaults for hosts whose keys change (pods, fresh instances); put your own `-o` options first
# in `ssh_options` to override them, since ssh keeps the first value it sees for an option.
CLIENT_OPTIONS = ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR")


@dataclass(frozen=True)
class SSHHost:
    """One SSH host: how to reach it, where musicsweep lives on it, and what it can run.

    `slots` workers run at once; `gpus` (when given) means one worker per GPU, each pinned with
    CUDA_VISIBLE_DEVICES. `python` skips the uv setup (unless `setup` is also given) and runs the
    worker with that interpreter; otherwise `setup` (default: uv) builds `{remote_dir}/code/.venv`.
    `env` names local environment variables forwarded to the worker through ssh's stdin.
    """

    host: str
    remote_dir: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    name: str | None = None
    slots: int = at_least(1, 1)
    gpus: int | None = at_least(1, None)
    hourly_cost_usd: float = at_least(0, 0.0)
    python: str | None = None
    setup: str | None = None
    env: tuple[str, ...] = ()
    ssh_options: tuple[str, ...] = ()
    retries: int = 2
    backoff_s: float = 0.5
    connect_timeout_s: int = 10

    @property
    def label(self) -> str:
        """The name jobs and messages use for this host."""
        return self.name or f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def workers(self) -> int:
        return self.gpus if self.gpus is not None else self.slots

    @property
    def code_dir(self) -> str:
        return f"{self.remote_dir.rstrip('/')}/code"

    @property
    def runs_dir(self) -> str:
        """The host-disk store and the sweeps' work folders: `{runs_dir}/{sweep}` mirrors the local layout."""
        return f"{self.remote_dir.rstrip('/')}/runs"

    def work_dir(self, sweep: str) -> str:
        return f"{self.runs_dir}/{sweep}"

    def check(self, where: str) -> None:
        """Raise a one-line error naming `where` if a field is out of range."""
        if not self.host or not self.remote_dir:
            raise MusicsweepError(f"{where}: 'host' and 'remote_dir' are required")
        if not 0 < self.port < 65536:
            raise MusicsweepError(f"{where}.port: expected 1-65535, got {self.port}")
        if self.workers < 1:
            raise MusicsweepError(f"{where}: 'slots'/'gpus' must be at least 1, got {self.workers}")
        if self.retries < 0 or self.backoff_s < 0 or self.connect_timeout_s < 1:
            raise MusicsweepError(f"{where}: 'retries', 'backoff_s' and 'connect_timeout_s' must be positive")
        for name in self.env:
            if not name.isidentifier():
                raise MusicsweepError(f"{where}.env: {name!r} is not an environment variable name")


class HostUnreachable(MusicsweepError):
    """ssh could not connect (or authenticate) after every retry."""


class Connections:
    """Counts ssh/rsync connections per host label; thread-safe."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def add(self, label: str) -> None:
        with self.lock:
            self.counts[label] += 1

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


CONNECTIONS = Connections()


def ssh_command(host: SSHHost) -> list[str]:
    """`ssh` with the host's port, key and client options, without a destination."""
    argv = ["ssh", "-p", str(host.port)]
    if host.identity_file:
        argv += ["-i", os.path.expanduser(host.identity_file), "-o", "IdentitiesOnly=yes"]
    for option in (*host.ssh_options, *CLIENT_OPTIONS, f"ConnectTimeout={host.connect_timeout_s}"):
        argv += ["-o", option]
    return argv


def ssh_argv(host: SSHHost, command: str) -> list[str]:
    """The full argv that runs `command` (a bash command line) on `host`."""
    return [*ssh_command(host), host.destination, command]


def _with_retries(host: SSHHost, what: str, attempt: Callable[[], subprocess.CompletedProcess], retry_on) -> str:
    """Run `attempt` until its exit status is not a connection failure; returns stdout."""
    for number in range(host.retries + 1):
        if number:
            time.sleep(host.backoff_s * 2 ** (number - 1))
        CONNECTIONS.add(host.label)
        result = attempt()
        if result.returncode not in retry_on:
            if result.returncode != 0:
                raise MusicsweepError(f"{what} on host {host.label} failed: {last_line(result.stderr)}")
            return result.stdout
    raise HostUnreachable(
        f"host {host.label}: cannot connect after {host.retries + 1} attempt(s): {last_line(result.stderr)}"
    )


def run_ssh(host: SSHHost, command: str, stdin: str = "", timeout_s: float = 600, what: str = "command") -> str:
    """Run `command` on `host` and return its stdout; `stdin` carries anything secret."""

    def attempt() -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                ssh_argv(host, command), input=stdin, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], SSH_FAILED, "", f"no answer within {timeout_s:g}s")

    return _with_retries(host, what, attempt, (SSH_FAILED,))


def rsync(host: SSHHost, sources: list[str], target: str, filters: Iterable[str] = (), what: str = "rsync") -> None:
    """`rsync -a` between this machine and `host`; remote paths are written `:path`."""
    remote_shell = shlex.join(ssh_command(host))
    paths = [f"{host.destination}{path}" if path.startswith(":") else path for path in [*sources, target]]
    argv = ["rsync", "-a", "--ignore-missing-args", "-e", remote_shell, *filters, *paths]

    def attempt() -> subprocess.CompletedProcess:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode == RSYNC_VANISHED:
            result.returncode = 0
        return result

    _with_retries(host, what, attempt, RSYNC_CONNECTION_FAILED)


def env_exports(names: Iterable[str], environ: dict[str, str] | None = None) -> str:
    """`export NAME=value` lines for ssh's stdin: the values never reach argv or a file."""
    environ = os.environ if environ is None else environ
    return "".join(f"export {name}={shlex.quote(environ[name])}\n" for name in names if name in environ)


def on_hosts(hosts: list[SSHHost], action: Callable[[SSHHost], T]) -> dict[str, T | MusicsweepError]:
    """Run `action` on every host at once; each host's result, or the MusicsweepError it raised."""

    def guarded(host: SSHHost) -> T | MusicsweepError:
        try:
            return action(host)
        except MusicsweepError as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(hosts)))) as pool:
        return dict(zip((h.label for h in hosts), pool.map(guarded, hosts), strict=True))


def combined_error(results: dict[str, object]) -> MusicsweepError | None:
    """One error naming every host that failed (each message names its host), or None."""
    errors = [result for result in results.values() if isinstance(result, MusicsweepError)]
    if len(errors) <= 1:
        return errors[0] if errors else None
    return MusicsweepError(f"{len(errors)} hosts failed: " + "; ".join(str(error) for error in errors))


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
