"""The two tiers of the suite (docs/testing.md): a test is `e2e` when it starts a worker subprocess
or a real server; `./scripts/test --quick` runs the rest (`-m "not e2e"`). And which tests must
share one test process when the suite runs in several (pytest-xdist, `--dist loadgroup`).

A test that uses a fixture from `tests/fixtures/` (each starts a server or a stand-in) is marked
here by that fixture alone; a test that starts workers carries the mark itself. Any test left
unmarked that starts a worker or takes a server fixture anyway fails with a line saying to mark it,
so a new test cannot land in the quick tier by mistake.

Test processes: a test whose server is unique on the machine (the SLURM cluster) goes to that
server's `xdist_group`, so one process starts it; a test using a module-scoped fixture goes to its
module's group, so the fixture runs once. A test that takes such a server with
`request.getfixturevalue` without being in its group fails with a line saying so.

A one-per-machine server may stop as soon as its group's last test has run (`stop_after_group`),
instead of idling until the session ends: an idle Ray cluster takes a tenth of a core, which the
rest of the suite needs on a 2-core machine.

This is a plugin (loaded by conftest.py), not conftest code: a conftest's hooks never see
session-wide fixtures, set up by the session.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator

import pytest

E2E = "e2e"
FIXTURE_MODULES = "tests.fixtures."
# A child that is a worker (the local backend's script, or the module itself) or auto_pull, which
# polls one: what the quick tier leaves out. A sweep script run as a child (`python sweep.py`) is
# not caught here; a test that runs one to start workers carries the mark itself.
WORKER_COMMAND = re.compile(r"(^|/)worker_\d+\.sh$|^musicsweep\.(worker|auto_pull)$")
GROUP = "xdist_group"
# Fixtures whose server exists once per machine, and the test-process group of every test using one.
ONE_PER_MACHINE = {"slurm_cluster": "slurm", "ray_cluster": "ray"}
SHARED_SCOPES = ("module", "class")  # a fixture of these scopes is set up once per process that runs it
EARLY_STOPS: dict[str, Callable[[], None]] = {}  # group -> how to stop its server (`stop_after_group`)


def is_e2e(item: pytest.Item) -> bool:
    return item.get_closest_marker(E2E) is not None


def pytest_configure(config: pytest.Config) -> None:
    """xdist registers its mark only when loaded; the suite runs without it too (`-p no:xdist`).
    loadgroup keeps a group together by suffixing node ids, which pytest 9.2 ignores (pytest-xdist
    issue 1386): every group would be split without a word, so such a pair refuses to run."""
    config.addinivalue_line("markers", f"{GROUP}(name): run in the same test process as the rest of its group")
    if getattr(config.option, "dist", "no") == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        raise pytest.UsageError("--dist loadgroup does not group tests on pytest 9.2 (pytest-xdist issue 1386)")


def process_group(item: pytest.Item, fixtures: dict[str, pytest.FixtureDef]) -> str | None:
    """The group a test must share a process with: its one-per-machine server's, else its module's
    when it uses a module-scoped fixture, else none."""
    for name, group in ONE_PER_MACHINE.items():
        if name in fixtures:
            return group
    if any(fixture.scope in SHARED_SCOPES for fixture in fixtures.values()):
        return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `e2e` every test that uses a server fixture (any fixture defined in `tests/fixtures/`),
    and put it in its test-process group (a group set by hand, as on a parameter, stays)."""
    for item in items:
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is None:
            continue
        fixtures = {name: defs[-1] for name, defs in fixture_info.name2fixturedefs.items() if defs}
        if any(fixture.func.__module__.startswith(FIXTURE_MODULES) for fixture in fixtures.values()):
            item.add_marker(E2E)
        group = process_group(item, fixtures)
        if group is not None and item.get_closest_marker(GROUP) is None:
            item.add_marker(pytest.mark.xdist_group(group))


def starts_a_worker(args: object) -> bool:
    argv = [str(arg) for arg in args] if isinstance(args, list | tuple) else [str(args)]
    if not argv or "-c" in argv[1:2]:  # `bash -c ...`, `python -c ...`: inline snippets
        return False
    return any(WORKER_COMMAND.search(arg) for arg in argv[1:])


@pytest.fixture(autouse=True)
def tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test not marked `e2e` fails as soon as it starts a worker process: mark it `e2e`."""
    if is_e2e(request.node):
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded_init(self: subprocess.Popen, args, *rest, **kwargs) -> None:
        if starts_a_worker(args):
            pytest.fail(f"{request.node.nodeid} starts a worker ({args!r}): mark it @pytest.mark.e2e", pytrace=False)
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    """A server fixture taken with `request.getfixturevalue` by a test not marked `e2e`, or a
    one-per-machine server by a test outside its group, fails the test."""
    item = getattr(request, "_pyfuncitem", None)
    if item is None:
        return
    if fixturedef.func.__module__.startswith(FIXTURE_MODULES) and not is_e2e(item):
        pytest.fail(f"{item.nodeid} starts {fixturedef.argname}: mark it @pytest.mark.e2e", pytrace=False)
    group = ONE_PER_MACHINE.get(fixturedef.argname)
    mark = item.get_closest_marker(GROUP)
    if group is not None and (mark is None or mark.args[:1] != (group,)):
        why = f"one process runs every test using it: mark it @pytest.mark.{GROUP}({group!r})"
        pytest.fail(f"{item.nodeid} starts {fixturedef.argname}; {why}", pytrace=False)


def stop_after_group(group: str, stop: Callable[[], None]) -> None:
    """Call `stop` once this process has run the last test of `group` (in the session's final order,
    so `-k` and the tiers are counted): `--dist loadgroup` sends a group to one process whole, so no
    test of it comes later. The server's own teardown must then find nothing left to stop."""
    EARLY_STOPS[group] = stop


def group_of(item: pytest.Item | None) -> str | None:
    mark = None if item is None else item.get_closest_marker(GROUP)
    return str(mark.args[0]) if mark is not None and mark.args else None


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's own teardown: stop its group's server if no later test of the session is in the group."""
    yield
    group = group_of(item)
    if group not in EARLY_STOPS:
        return
    position = item.session.items.index(item)
    if not any(group_of(later) == group for later in item.session.items[position + 1 :]):
        EARLY_STOPS.pop(group)()
