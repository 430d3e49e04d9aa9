"""Imports between musicsweep's folders run downwards: a new upward import fails here.

LAYERS is the picture in docs/architecture.md ("Layers"), top first. A module may import its own
folder (or top-level module) and anything in a lower layer; an import upwards or across one layer
must be named in UPWARD with the reason it is worth a circle. Imports inside functions and under
TYPE_CHECKING count too: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "musicsweep"

LAYERS = (
    ("cli",),
    ("curate",),
    ("doctor", "report"),
    ("sweep",),
    ("backends",),
    ("remote", "worker"),
    ("scripts",),
    ("contract", "costs", "engine"),
    ("billing",),
    ("store",),
    ("config", "failure", "states", "version"),
    ("layout",),
    ("manifest",),
    ("job",),
    ("atomic", "digests", "models", "terminal"),
    ("errors",),
)

# Above every layer: the package's public names and the `python -m` forwarders users and generated
# scripts call, each a few lines that hand over to cli/ or worker/.
ENTRY_POINTS = {"__init__.py", "auto_pull.py", "launch.py", "report/__main__.py", "worker/__main__.py"}

UPWARD = {
    ("config", "backends"): "config.py checks `backend:` against backends/registry.py, data only "
    "(name -> 'module:Class'), so config validation and get_backend read one list of names",
    ("costs", "backends"): "costs/estimate.py names backends/base.py's Shard in type hints only "
    "(under TYPE_CHECKING): the estimate prices the shards a backend made",
    ("remote", "backends"): "remote/hosts.py renders a host's worker script from the backend "
    "interface's Launch and Shard records and reads hosts with backends/probe.py, the bash probe the "
    "local backend shares; open: both could move below backends/",
    ("remote", "worker"): "remote/hosts.py checks a host's python with worker/deps.py's remote_check, "
    "so the launcher and the worker name missing modules with one message",
    ("report", "curate"): "the static report shows the saved ratings and A/B results read-only: "
    "report/build.py draws curate/page.py's parts through one lazy import",
    ("sweep", "curate"): "VariantGenerator.from_ratings, where sweep scripts look for it, forwards "
    "through one lazy import to curate/favourites.py, which builds on the sweep's variants",
}


def folder_of(module: str) -> str:
    """`musicsweep.sweep.plan` -> `sweep`; `musicsweep.config` -> `config`."""
    return module.split(".")[1]


def imports() -> list[tuple[str, str, str]]:
    """(importing file, its folder, imported folder) for every import of another folder of musicsweep."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in ENTRY_POINTS:
            continue
        source = relative.split("/")[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("musicsweep.") and folder_of(name) != source:
                    found.append((relative, source, folder_of(name)))
    return found


def test_every_folder_has_a_layer_and_every_entry_point_exists() -> None:
    layered = {folder for layer in LAYERS for folder in layer}
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "auto_pull", "launch"}
    assert folders | modules == layered
    assert all((PACKAGE / entry).exists() for entry in ENTRY_POINTS)


def test_imports_run_downwards_except_the_named_ones() -> None:
    rank = {folder: index for index, layer in enumerate(LAYERS) for folder in layer}
    upward = {(source, target) for _, source, target in imports() if rank[target] <= rank[source]}
    offenders = sorted(
        f"{relative} imports {target}/ ({source} is not above it)"
        for relative, source, target in imports()
        if (source, target) in upward - UPWARD.keys()
    )
    assert offenders == []
    assert upward == UPWARD.keys(), "an allowed upward import is gone: drop it from UPWARD and the picture"
