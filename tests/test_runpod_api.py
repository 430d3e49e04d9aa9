"""The RunPod API wrapper against the GraphQL stand-in over HTTP: retries, capacity errors,
the pod lifecycle, termination, and the pod's self-termination with its pod-scoped key."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from musicsweep import MusicsweepError
from musicsweep.backends.runpod.api import NoCapacity, Pod, Retry, RunPodAPI, api_key_from, b64
from tests.fixtures.runpod_graphql import ACCOUNT_KEY, RunPodStandIn

FAST = Retry(attempts=3, backoff_s=0.01)
POD_OPTIONS = {"cloud_type": "SECURE", "image_name": "runpod/pytorch:test", "ports": "22/tcp"}


@pytest.fixture
def api(runpod_standin: RunPodStandIn) -> RunPodAPI:
    return RunPodAPI(ACCOUNT_KEY, FAST)


def test_gpu_types_and_on_demand_pod_lifecycle(api: RunPodAPI, runpod_standin: RunPodStandIn) -> None:
    runpod_standin.ssh_host, runpod_standin.ssh_port = "127.0.0.1", 2222
    assert "NVIDIA L40S" in api.gpu_types()
    pod_id = api.create_pod(
        "musicsweep s w0", "NVIDIA L40S", env={"PUBLIC_KEY": b64("ssh-ed25519 AAAA me")}, **POD_OPTIONS
    )
    seen = [api.get_pod(pod_id) for _ in range(3)]
    assert [pod.desired_status for pod in seen] == ["CREATED", "CREATED", "RUNNING"]
    assert [pod.public_ssh for pod in seen] == [None, ("127.0.0.1", 2222), ("127.0.0.1", 2222)]
    assert [pod.ready for pod in seen] == [False, False, True]
    assert seen[-1].cost_per_hr == pytest.approx(0.86)
    assert [pod.id for pod in api.list_pods()] == [pod_id]
    api.terminate_pod(pod_id)
    assert api.get_pod(pod_id) is None
    assert not [op for op in runpod_standin.operations if op.startswith("podStop")]


def test_no_capacity_is_its_own_error(api: RunPodAPI, runpod_standin: RunPodStandIn) -> None:
    runpod_standin.no_capacity.add("NVIDIA L40S")
    with pytest.raises(NoCapacity, match="no longer any instances available"):
        api.create_pod("musicsweep s w0", "NVIDIA L40S", **POD_OPTIONS)


def test_a_502_is_retried_with_backoff(api: RunPodAPI, runpod_standin: RunPodStandIn, capsys) -> None:
    runpod_standin.fail_next = [502, 503]
    assert "NVIDIA L40S" in api.gpu_types()
    assert capsys.readouterr().out.count("retry") == 2


def test_persistent_5xx_fails_with_one_line(api: RunPodAPI, runpod_standin: RunPodStandIn) -> None:
    runpod_standin.fail_next = [502] * 3
    with pytest.raises(MusicsweepError) as caught:
        api.gpu_types()
    assert "\n" not in str(caught.value) and "list GPU types" in str(caught.value)
    assert ACCOUNT_KEY not in str(caught.value)


def test_api_key_comes_from_the_environment_or_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    assert api_key_from("from-config", "musicsweep.yaml: key 'backends.runpod'") == "from-config"
    with pytest.raises(MusicsweepError, match="musicsweep.yaml: key 'backends.runpod': no RunPod API key"):
        api_key_from(None, "musicsweep.yaml: key 'backends.runpod'")
    monkeypatch.setenv("RUNPOD_API_KEY", "from-env")
    assert api_key_from("from-config", "x") == "from-env"


def _terminate_self(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "musicsweep.backends.runpod.api", "terminate-self"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_pod_terminates_itself_with_its_pod_scoped_key(api: RunPodAPI, runpod_standin: RunPodStandIn) -> None:
    first = api.create_pod("musicsweep s w0", "NVIDIA L40S", **POD_OPTIONS)
    second = api.create_pod("musicsweep s w1", "NVIDIA L40S", **POD_OPTIONS)
    keys = {pod.id: pod.pod_key for pod in runpod_standin.live_pods()}
    refused = _terminate_self({"RUNPOD_POD_ID": second, "RUNPOD_API_KEY": keys[first]})
    assert refused.returncode == 1 and "refused" in refused.stdout
    runpod_standin.fail_next = [502]
    done = _terminate_self({"RUNPOD_POD_ID": first, "RUNPOD_API_KEY": keys[first]})
    assert done.returncode == 0, done.stdout + done.stderr
    assert runpod_standin.self_terminated == [first]
    assert [pod.id for pod in runpod_standin.live_pods()] == [second]
    not_a_pod = _terminate_self({"RUNPOD_POD_ID": "", "RUNPOD_API_KEY": ""})
    assert not_a_pod.returncode == 0 and "nothing to terminate" in not_a_pod.stdout


def test_a_create_whose_reply_was_lost_does_not_make_a_second_pod(
    api: RunPodAPI, runpod_standin: RunPodStandIn
) -> None:
    runpod_standin.lose_reply_of.add("podFindAndDeployOnDemand")
    pod_id = api.create_pod("musicsweep s L1 w0", "NVIDIA L40S", **POD_OPTIONS)
    assert [pod.id for pod in runpod_standin.live_pods()] == [pod_id]


def test_runpod_terminate_is_verified_after_its_last_call() -> None:
    """The pod is gone only after the last allowed call: that is a success, not 'still not terminated'."""
    api = RunPodAPI.__new__(RunPodAPI)
    api.retry, api.runpod = Retry(attempts=2, backoff_s=0), SimpleNamespace(terminate_pod=None)
    live = Pod("p1", "musicsweep s L1 w0", "RUNNING", 0.5, None)
    answers = iter([live, live, None])
    calls: list[str] = []
    api.get_pod = lambda pod_id: next(answers)  # type: ignore[method-assign]
    api._call = lambda what, function, *args: calls.append(what)  # type: ignore[method-assign]
    assert api.terminate_pod("p1") is True
    assert calls == ["terminate pod p1", "terminate pod p1"]
