"""Rules the test suite keeps about itself (docs/testing.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.tiers import starts_a_worker

TESTS = Path(__file__).parent


def imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names += [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/helpers.py or a fixture module: a test file imports no test file."""
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in imported_names(ast.parse(path.read_text()))
        if any(part.startswith("test_") for part in name.split("."))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("args", "worker"),
    [
        (["bash", "/tmp/p/runs/s/scripts/worker_0.sh"], True),
        (["/usr/bin/python3", "-m", "musicsweep.worker", "a.pkl"], True),
        (["/usr/bin/python3", "-m", "musicsweep.auto_pull", "s", "--once"], True),
        (["/usr/bin/python3", "-c", "import time; time.sleep(1)"], False),
        (["bash", "-c", "sleep 60 & wait"], False),
        (["ssh-keygen", "-q", "-t", "ed25519"], False),
        (["/usr/bin/python3", "-m", "venv", "--without-pip", "/tmp/bare"], False),
    ],
)
def test_the_tier_guard_knows_a_worker_start(args: list[str], worker: bool) -> None:
    """What `tier_guard` (tests/tiers.py) refuses in a test not marked e2e."""
    assert starts_a_worker(args) is worker
