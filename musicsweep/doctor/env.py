"""This machine's Python and uv, and the worker's interpreter when the worker runs here.

CUDA and bf16 are read in a child interpreter (the worker's), so the doctor itself never imports
torch, and a worker `python:` other than this one is judged by what it has.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from musicsweep.config import EngineConfig
from musicsweep.doctor.result import FAIL, FIXED, OK, Check
from musicsweep.engine.loading import CPU_BF16_FLAGS
from musicsweep.errors import MusicsweepError
from musicsweep.worker.deps import FIX, missing_modules, same_interpreter

# Prints one JSON line: torch's version, the first CUDA device (or null), and bf16 support there.
TORCH_PROBE = (
    "import json, pathlib, torch\n"
    "cuda = torch.cuda.is_available()\n"
    "cpu = pathlib.Path('/proc/cpuinfo')\n"
    "flags = cpu.read_text() if cpu.exists() else ''\n"
    "bf16 = torch.cuda.is_bf16_supported() if cuda else any(f in flags for f in {flags!r})\n"
    "print(json.dumps({{'torch': torch.__version__, 'cuda': torch.cuda.get_device_name(0) if cuda else None,"
    " 'bf16': bool(bf16)}}))\n"
)


def torch_probe() -> str:
    return TORCH_PROBE.format(flags=CPU_BF16_FLAGS)


def python_check() -> Check:
    """Informational: musicsweep does not import below 3.11 (`requires-python`), so this ran on one."""
    return Check("python", OK, f"{'.'.join(map(str, sys.version_info[:3]))} at {sys.executable}")


def uv_check(needed_for: str | None) -> Check:
    """uv builds the wheel that remote hosts install; the local backend does not need it."""
    uv = shutil.which("uv")
    if uv is not None:
        return Check("uv", OK, uv)
    if needed_for is None:
        return Check("uv", OK, "not on PATH (the local backend does not need it)")
    return Check("uv", FAIL, f"not on PATH: needed to {needed_for}", "pip install uv")


def gpu_check(python: str, engine: EngineConfig, label: str = "") -> Check:
    """CUDA and bf16 as the worker's interpreter sees them; no CUDA fails only with `device: cuda`."""
    name = f"{label}CUDA and bf16"
    try:
        result = subprocess.run([python, "-c", torch_probe()], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check(name, FAIL, f"cannot run {python}: {error}")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        return Check(name, FAIL, f"importing torch with {python} failed: {lines[-1]}", FIX)
    return describe_gpu(name, json.loads(result.stdout.strip().splitlines()[-1]), engine)


def describe_gpu(name: str, found: dict, engine: EngineConfig) -> Check:
    bf16 = "yes" if found["bf16"] else "no"
    if found["cuda"]:
        return Check(name, OK, f"torch {found['torch']}, CUDA device {found['cuda']}, bf16 {bf16}")
    detail = f"torch {found['torch']}, no CUDA device: workers run on the CPU (native bf16 {bf16})"
    if engine.device == "cuda":
        fix = "set engine.device: auto, or run on a GPU host"
        return Check(name, FAIL, detail + ", but engine.device is cuda", fix)
    return Check(name, OK, detail)


def checkout_venv() -> Path | None:
    """This checkout, when this interpreter is its uv venv (the only env `--fix` may change)."""
    from musicsweep.version import checkout_root

    root = checkout_root()
    if root is None:
        return None
    venv = root / ".venv"
    return root if Path(sys.prefix).resolve() == venv.resolve() and (root / "uv.lock").is_file() else None


def install_worker_extra(root: Path) -> str | None:
    """`uv sync --inexact --extra worker` in the checkout (keeps other extras); None when it worked."""
    argv = ["uv", "sync", "--inexact", "--extra", "worker"]
    result = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        print(f"fixed: ran `{' '.join(argv)}` in {root}")
        return None
    return (result.stderr.strip().splitlines() or ["failed"])[-1]


def worker_checks(python: str | None, engine: EngineConfig, fix: bool, where: str) -> list[Check]:
    """The worker's modules in the interpreter that will run it here, then its CUDA and bf16."""
    python = python or sys.executable
    name = f"worker deps ({where})"
    try:
        missing = missing_modules(python)
    except MusicsweepError as error:
        return [Check(name, FAIL, str(error), f"point {where} at a working interpreter")]
    status = OK
    if missing and fix and same_interpreter(python) and (root := checkout_venv()) is not None:
        problem = install_worker_extra(root)
        importlib.invalidate_caches()  # the new site-packages entries must be seen by find_spec
        missing = missing_modules(sys.executable) if problem is None else missing
        status = FIXED if not missing else FAIL
    if missing:
        return [Check(name, FAIL, f"{python} cannot import {', '.join(missing)}", FIX)]
    return [Check(name, status, f"{python}: torch, transformers, soundfile"), gpu_check(python, engine)]
