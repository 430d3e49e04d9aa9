"""docs/reference/ is generated from the real parsers and config schema: committed text that
differs from what the code generates fails here, with the command that regenerates it."""

from __future__ import annotations

from musicsweep.cli.reference import REFERENCE_DIR, REGENERATE, render, stale_files


def test_committed_reference_matches_the_code() -> None:
    assert stale_files() == [], f"docs/reference/ is out of date: run `{REGENERATE}`"


def test_reference_covers_every_command_and_section() -> None:
    from musicsweep.cli.main import COMMANDS

    cli, config = render()["cli.md"], render()["config.md"]
    assert {f"## musicsweep {command}" for command in COMMANDS} <= set(cli.splitlines())
    assert "## backends.ssh.hosts[]" in config.splitlines() and "| `lease_s` |" in config
    assert sorted(path.name for path in REFERENCE_DIR.iterdir()) == ["cli.md", "config.md"]
