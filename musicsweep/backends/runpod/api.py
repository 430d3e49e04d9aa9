"""A thin wrapper over the `runpod` SDK: explicit API key, retries, and typed answers.

The SDK neither reads `RUNPOD_API_KEY` by itself nor retries, and it only checks for HTTP 401:
a gateway's 5xx page reaches us as a JSON decoding error, and a 5xx with a JSON body as a reply
without `data`. Both, and network errors, are retried with exponential backoff. The SDK also
builds GraphQL strings without escaping, so callers pass env values and start commands
base64-encoded (`b64`).

`python -m musicsweep.backends.runpod.api terminate-self` runs on a pod at the end of its script: it
terminates the pod with the pod-scoped `RUNPOD_API_KEY` and `RUNPOD_POD_ID` that RunPod gives
every pod, using only the standard library (the pod has no runpod SDK).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from musicsweep.errors import MusicsweepError

T = TypeVar("T")
logger = logging.getLogger(__name__)
DEFAULT_API_URL = "https://api.runpod.io"
_NO_CAPACITY = re.compile(r"no (longer any )?instances available", re.IGNORECASE)
_POD_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class NoCapacity(MusicsweepError):
    """RunPod has no machine of the requested GPU type right now: try the next type."""


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: `backoff_s`, then twice that, and so on up to `max_backoff_s`."""

    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def run(self, what: str, call: Callable[[], T], transient: Callable[[BaseException], bool]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except Exception as error:
                if not transient(error) or attempt == self.attempts:
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                logger.warning(f"RunPod API: {what}: {describe(error)}; retry {attempt} in {delay:g}s")
                time.sleep(delay)
        raise AssertionError("unreachable")


def describe(error: BaseException) -> str:
    """One line about an API error: its type and the first line of its message (never the query)."""
    text = str(error.args[0]) if error.args else ""
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"[:200]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def api_url() -> str:
    """The SDK reads `RUNPOD_API_BASE_URL` on every call; the pod's self-termination does too."""
    return os.environ.get("RUNPOD_API_BASE_URL", DEFAULT_API_URL)


def api_key_from(configured: str | None, where: str) -> str:
    key = os.environ.get("RUNPOD_API_KEY") or configured
    if not key:
        raise MusicsweepError(f"{where}: no RunPod API key: set RUNPOD_API_KEY (or backends.runpod.api_key)")
    return key


@dataclass(frozen=True)
class Pod:
    """What the backend needs from `get_pod`."""

    id: str
    name: str
    desired_status: str
    cost_per_hr: float
    public_ssh: tuple[str, int] | None  # (ip, port) of a public mapping of port 22

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Pod:
        ports = ((raw.get("runtime") or {}).get("ports")) or []
        ssh = next((p for p in ports if p.get("privatePort") == 22 and p.get("isIpPublic")), None)
        return cls(
            id=raw["id"],
            name=raw.get("name") or "",
            desired_status=raw.get("desiredStatus") or "",
            cost_per_hr=float(raw.get("costPerHr") or 0.0),
            public_ssh=(ssh["ip"], int(ssh["publicPort"])) if ssh else None,
        )

    @property
    def ready(self) -> bool:
        return self.desired_status == "RUNNING" and self.public_ssh is not None

    @property
    def gone(self) -> bool:
        return self.desired_status in ("EXITED", "TERMINATED")


def sdk_transient(error: BaseException) -> bool:
    """Network errors, non-JSON replies (a 5xx page) and replies without `data` (a 5xx in JSON)."""
    import requests

    exceptions = requests.exceptions
    transient = (exceptions.ConnectionError, exceptions.Timeout, exceptions.ChunkedEncodingError)
    return isinstance(error, transient + (exceptions.JSONDecodeError, KeyError))


class RunPodAPI:
    """Every RunPod call the backend makes, each retried on transient failures."""

    def __init__(self, api_key: str, retry: Retry = Retry()) -> None:
        import runpod

        self.runpod = runpod
        self.api_key = api_key
        self.retry = retry

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            self.runpod.api_key = self.api_key
            return function(*args, **kwargs)

        try:
            return self.retry.run(what, call, sdk_transient)
        except self.runpod.error.QueryError as error:
            if _NO_CAPACITY.search(str(error)):
                raise NoCapacity(f"RunPod: {what}: {describe(error)}") from None
            raise MusicsweepError(f"RunPod API: {what}: {describe(error)}") from None
        except self.runpod.error.AuthenticationError:
            raise MusicsweepError(f"RunPod API: {what}: the API key was refused") from None
        except Exception as error:
            raise MusicsweepError(f"RunPod API: {what} failed: {describe(error)}") from None

    def gpu_types(self) -> dict[str, dict[str, Any]]:
        return {gpu["id"]: gpu for gpu in self._call("list GPU types", self.runpod.get_gpus)}

    def create_pod(self, name: str, gpu_type: str, **options: Any) -> str:
        """On-demand pod (interruptible pods are being withdrawn from the API); returns its id.

        A retry first looks for a live pod of this (unique) name: the attempt whose reply was lost
        may have created it, and a second pod would run unnoticed.
        """
        attempts = 0

        def create() -> dict:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                for pod in self.runpod.get_pods() or []:
                    if pod.get("name") == name and pod.get("desiredStatus") != "TERMINATED":
                        return pod
            return self.runpod.create_pod(name, gpu_type_id=gpu_type, **options)

        return self._call(f"create a {gpu_type} pod", create)["id"]

    def get_pod(self, pod_id: str) -> Pod | None:
        raw = self._call(f"get pod {pod_id}", self.runpod.get_pod, pod_id)
        return Pod.from_api(raw) if raw else None

    def list_pods(self) -> list[Pod]:
        return [Pod.from_api(raw) for raw in self._call("list pods", self.runpod.get_pods) or []]

    def terminate_pod(self, pod_id: str) -> bool:
        """Terminate (never stop: a stopped pod still bills for its disk), then check it is gone.

        The SDK ignores the reply of `podTerminate`, so a 5xx there would pass silently. Returns
        False when the pod was already gone.
        """
        for attempt in range(self.retry.attempts + 1):  # the last look verifies the last call
            pod = self.get_pod(pod_id)
            if pod is None or pod.desired_status == "TERMINATED":
                return attempt > 0
            if attempt < self.retry.attempts:
                self._call(f"terminate pod {pod_id}", self.runpod.terminate_pod, pod_id)
        raise MusicsweepError(f"RunPod API: pod {pod_id} is still not terminated: terminate it by hand")


def terminate_self(environ: dict[str, str], retry: Retry = Retry()) -> int:
    """The backstop on the pod: terminate this pod with its own pod-scoped key."""
    pod_id, key = environ.get("RUNPOD_POD_ID", ""), environ.get("RUNPOD_API_KEY", "")
    if not pod_id or not key:
        logger.info("no RUNPOD_POD_ID/RUNPOD_API_KEY here: not a RunPod pod, nothing to terminate")
        return 0
    if not _POD_ID.match(pod_id):
        logger.error(f"RUNPOD_POD_ID {pod_id!r} is malformed: not terminating")
        return 1
    query = f'mutation {{ podTerminate(input: {{podId: "{pod_id}"}}) }}'
    request = urllib.request.Request(
        f"{environ.get('RUNPOD_API_BASE_URL', DEFAULT_API_URL)}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )

    def call() -> dict:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def transient(error: BaseException) -> bool:
        if isinstance(error, urllib.error.HTTPError):
            return error.code >= 500
        return isinstance(error, urllib.error.URLError | TimeoutError | ConnectionError | json.JSONDecodeError)

    try:
        reply = retry.run("terminate this pod", call, transient)
    except Exception as error:
        logger.error(f"self-termination failed: {describe(error)}")
        return 1
    if reply.get("errors"):
        logger.error(f"self-termination refused: {reply['errors'][0].get('message', '')[:200]}")
        return 1
    logger.info(f"terminating pod {pod_id}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["terminate-self"]:
        sys.exit("usage: python -m musicsweep.backends.runpod.api terminate-self")
    logging.basicConfig(level=logging.INFO, format="[musicsweep] %(message)s", stream=sys.stdout)  # the pod's log
    sys.exit(terminate_self(dict(os.environ)))
