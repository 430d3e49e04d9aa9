"""`python -m musicsweep.cli.reference`: write docs/reference/ from the real argument parsers and
config schema (`--check`: only compare). The reference is generated so that it cannot drift: a
test fails when the committed files differ from what this writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from musicsweep.config import Config

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "docs" / "reference"
REGENERATE = "uv run python -m musicsweep.cli.reference"
WIDTH = "100"  # columns argparse wraps help at, fixed so the output does not depend on the terminal

# musicsweep.yaml sections and the dataclass each is read into (`config.typed_section`).
SECTIONS = {
    "(top level)": "musicsweep.config:Config",
    "store": "musicsweep.config:StoreConfig",
    "engine": "musicsweep.config:EngineConfig",
    "estimate": "musicsweep.config:EstimateConfig",
    "recovery": "musicsweep.config:RecoveryConfig",
    "worker": "musicsweep.config:WorkerConfig",
    "backends.local": "musicsweep.backends.local:LocalConfig",
    "backends.ssh": "musicsweep.remote.hosts:HostSettings",
    "backends.ssh.hosts[]": "musicsweep.remote.ssh:SSHHost",
    "backends.slurm": "musicsweep.backends.slurm.settings:SlurmConfig",
    "backends.ec2": "musicsweep.backends.ec2.config:EC2Config",
    "backends.runpod": "musicsweep.backends.runpod.settings:RunPodSettings",
    "backends.ray": "musicsweep.backends.ray.settings:RayConfig",
}
NOT_KEYS = {"source", "base_dir"}  # Config fields set by the loader, not read from the file


def load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def type_name(hint: object) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("typing.", "").replace("pathlib.", "").replace("musicsweep.remote.ssh.", "")


def default_of(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    return f"`{value!s}`" if isinstance(value, Path) else f"`{value!r}`"


def section_table(cls: type) -> str:
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        if field.init and field.name not in NOT_KEYS and not (cls is Config and field.name == "backends"):
            minimum = field.metadata.get("min")
            limit = "" if minimum is None else f" (at least {minimum})"
            hint = type_name(hints[field.name]).replace("|", "\\|")  # a bare | would end the table cell
            rows.append(f"| `{field.name}` | `{hint}` | {default_of(field)}{limit} |")
    return "\n".join(rows)


def config_reference() -> str:
    parts = [
        "# musicsweep.yaml reference\n",
        f"Generated from the config dataclasses by `{REGENERATE}`; do not edit. Unknown keys and values",
        "of the wrong type are refused before anything starts, in one line naming the key.",
    ]
    for section, path in SECTIONS.items():
        parts += [f"\n## {section}\n", f"Read into `{path.replace(':', '.')}`.\n", section_table(load(path))]
    return "\n".join(parts) + "\n"


def help_of(main: Callable[[list[str]], int | None], argv: list[str]) -> str:
    """What `main(argv + ['--help'])` prints: the real parser's own help."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue().rstrip()


def cli_reference() -> str:
    from musicsweep.cli.hydra_app import CONFIG_DIR, FLAGS
    from musicsweep.cli.main import COMMANDS, top_parser

    parts = [
        "# Command line reference\n",
        f"Generated from the argument parsers by `{REGENERATE}`; do not edit.\n",
        "## musicsweep\n",
        "```text\n" + top_parser().format_help().rstrip() + "\n```",
        "\n## musicsweep launch\n",
        "`musicsweep launch` is a Hydra app: its arguments are overrides of the config below (the",
        "sweep axes, `model`, `backend`, `store`, `name`), plus `-m` for a multirun and these flags:\n",
        *(f"- `{flag}`: `{override}`" for flag, override in FLAGS.items()),
        "\n`configs/config.yaml`:\n",
        "```yaml\n" + (Path(CONFIG_DIR) / "config.yaml").read_text().rstrip() + "\n```",
    ]
    for command in sorted(set(COMMANDS) - {"launch"}):
        parts += [f"\n## musicsweep {command}\n", "```text\n" + help_of(COMMANDS[command], []) + "\n```"]
    return "\n".join(parts) + "\n"


def render() -> dict[str, str]:
    """File name in docs/reference/ -> its generated text."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return {"cli.md": cli_reference(), "config.md": config_reference()}
    finally:
        if saved is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved


def stale_files(folder: Path = REFERENCE_DIR) -> list[str]:
    """Names whose committed text differs from what the code generates."""
    path = lambda name: folder / name  # noqa: E731
    return [name for name, text in render().items() if not path(name).is_file() or path(name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicsweep.cli.reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/reference/ is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"docs/reference/{name} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (REFERENCE_DIR / name).write_text(text)
        print(f"wrote docs/reference/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
