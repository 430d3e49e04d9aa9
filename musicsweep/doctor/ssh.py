"""SSH hosts: reachable with the key, `remote_dir` writable, what the setup will find there, and
whether this machine knows the host's key.

One round trip per host (all hosts at once) runs a probe that writes nothing: the nearest
existing folder of `remote_dir` must be writable, uv is looked up, a `python:` is asked for the
worker's modules and its CUDA, and for the default setup `uv pip install --dry-run --offline`
of the pinned dependencies says whether the host's uv cache alone can set it up.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

from musicsweep.config import Config, EngineConfig
from musicsweep.doctor.env import describe_gpu, torch_probe
from musicsweep.doctor.result import FAIL, FIXED, NOTE, OK, Check
from musicsweep.errors import MusicsweepError
from musicsweep.remote.bundle import WorkerBundle, build_bundle
from musicsweep.remote.packaging import PYLOCK
from musicsweep.remote.ssh import SSHHost, env_exports, on_hosts, run_ssh
from musicsweep.worker.deps import FIX, probe_code

PROBE = """\
d={remote_dir}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done
if [ -d "$d" ] && [ -w "$d" ]; then echo writable=1; else echo "writable=0 $d"; fi
echo "stamp=$(cat {stamp_file} 2>/dev/null)"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
echo "uv=$(command -v uv)"
"""
PYTHON_PROBE = """\
echo "missing=$({python} -c {deps} 2>/dev/null || echo '?')"
echo "gpu=$({python} -c {torch} 2>/dev/null | tail -n 1)"
"""
OFFLINE_PROBE = """\
if command -v uv >/dev/null; then
  t=$(mktemp -d); printf %s {pylock} >"$t/pylock.toml"
  if uv venv -q --python '>=3.11' "$t/venv" >/dev/null 2>&1 \\
    && uv pip install --dry-run --offline --python "$t/venv/bin/python" -r "$t/pylock.toml" >/dev/null 2>&1
  then echo offline=1; else echo offline=0; fi
  rm -rf "$t"
fi
"""


def probe_script(host: SSHHost, bundle: WorkerBundle | None) -> str:
    from musicsweep.remote.hosts import uses_default_setup

    script = env_exports(host.env) + PROBE.format(
        remote_dir=shlex.quote(host.remote_dir), stamp_file=shlex.quote(f"{host.remote_dir}/.musicsweep-env")
    )
    if host.python is not None:
        deps, torch = shlex.quote(probe_code()), shlex.quote(torch_probe())
        script += PYTHON_PROBE.format(python=host.python, deps=deps, torch=torch)
    if uses_default_setup(host) and bundle is not None and bundle.pinned:
        script += OFFLINE_PROBE.format(pylock=shlex.quote((bundle.folder / PYLOCK).read_text()))
    return script


def parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def connection_fix(message: str) -> str:
    if "Permission denied" in message:
        return "put your public key in the host's ~/.ssh/authorized_keys, or set identity_file"
    return "check host and port (`port:`), and that sshd runs there"


def host_checks(host: SSHHost, found: dict[str, str] | MusicsweepError, bundle, base_dir, engine) -> list[Check]:
    from musicsweep.remote.hosts import setup_stamp, uses_default_setup

    label = f"ssh {host.label}"
    if isinstance(found, MusicsweepError):
        message = " ".join(str(found).split())
        return [Check(f"{label}: connection", FAIL, message, connection_fix(message))]
    checks = [Check(f"{label}: connection", OK, "reachable, key accepted")]
    if found.get("writable") == "1":
        checks.append(Check(f"{label}: remote_dir", OK, f"{host.remote_dir} can be created or written"))
    else:
        parent = found.get("writable", "0 ?").split(" ", 1)[-1]
        fix = f"make {parent} writable for {host.user or 'the ssh user'}, or change remote_dir"
        checks.append(Check(f"{label}: remote_dir", FAIL, f"{host.remote_dir}: {parent} is not writable", fix))
    if host.python is not None:
        missing = found.get("missing", "?")
        if missing:
            detail = f"{host.python} cannot import {missing}" if missing != "?" else f"{host.python} does not run"
            checks.append(Check(f"{label}: worker deps", FAIL, detail, FIX))
        else:
            checks.append(Check(f"{label}: worker deps", OK, f"{host.python}: torch, transformers, soundfile"))
            checks.append(gpu_row(f"{label}: ", found.get("gpu", ""), engine))
    if host.setup is not None:
        checks.append(Check(f"{label}: setup", OK, f"your setup command runs at launch: {host.setup}"))
    if uses_default_setup(host):
        checks += default_setup_rows(label, found, setup_stamp(host, base_dir, bundle))
    return checks


def gpu_row(label: str, line: str, engine: EngineConfig) -> Check:
    import json

    try:
        return describe_gpu(f"{label}CUDA and bf16", json.loads(line), engine)
    except ValueError:
        return Check(f"{label}CUDA and bf16", FAIL, "importing torch failed on the host", FIX)


def default_setup_rows(label: str, found: dict[str, str], stamp: str | None) -> list[Check]:
    uv = found.get("uv") or ""
    rows = [
        Check(f"{label}: uv", OK, uv)
        if uv
        else Check(f"{label}: uv", NOTE, "not installed: the setup installs it with pip (needs the package index)")
    ]
    if stamp is not None and found.get("stamp") == stamp:
        rows.append(Check(f"{label}: setup offline", OK, "the environment is already set up for this code"))
    elif found.get("offline") == "1":
        rows.append(Check(f"{label}: setup offline", OK, "the host's uv cache holds every pinned package"))
    else:
        detail = "no: the setup will download packages from the package index"
        rows.append(Check(f"{label}: setup offline", NOTE, detail))
    return rows


def known_hosts_entry(host: SSHHost) -> str:
    return host.host if host.port == 22 else f"[{host.host}]:{host.port}"


def known_hosts_check(host: SSHHost, fix: bool) -> Check:
    """Is the host's key in ~/.ssh/known_hosts? With `fix`, add it after printing its fingerprint."""
    name = f"ssh {host.label}: known_hosts"
    known = Path.home() / ".ssh/known_hosts"
    entry = known_hosts_entry(host)
    found = subprocess.run(["ssh-keygen", "-F", entry, "-f", str(known)], capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip():
        return Check(name, OK, f"{entry} is in {known}")
    if not fix:
        return Check(name, FAIL, f"{entry} is not in {known}", "musicsweep doctor --fix (shows the fingerprint first)")
    scan = subprocess.run(
        ["ssh-keyscan", "-p", str(host.port), "-T", "5", host.host], capture_output=True, text=True, timeout=30
    )
    keys = scan.stdout if scan.returncode == 0 else ""
    if not keys.strip():
        return Check(name, FAIL, f"ssh-keyscan got no key from {entry}", "check that the host answers")
    fingerprints = subprocess.run(["ssh-keygen", "-lf", "-"], input=keys, capture_output=True, text=True).stdout
    for line in fingerprints.splitlines():
        print(f"host key of {entry}: {line}")
    known.parent.mkdir(mode=0o700, exist_ok=True)
    with open(known, "a") as handle:
        handle.write(keys if keys.endswith("\n") else keys + "\n")
    print(f"fixed: added {len(keys.splitlines())} key(s) of {entry} to {known}")
    return Check(name, FIXED, f"added {entry} to {known}")


def worker_bundle_for_doctor(hosts: list[SSHHost], folder: Path) -> WorkerBundle | Check | None:
    from musicsweep.remote.hosts import uses_default_setup

    if not any(uses_default_setup(host) for host in hosts):
        return None
    try:
        return build_bundle(folder / "setup")
    except MusicsweepError as error:
        return Check("worker wheel", FAIL, str(error), "pip install uv (a checkout builds the wheel with it)")


def ssh_host_checks(hosts: list[SSHHost], config: Config, fix: bool) -> list[Check]:
    """Every check of every host, hosts probed in parallel with the env a launch forwards them."""
    with tempfile.TemporaryDirectory(prefix="musicsweep-doctor-") as scratch:
        bundle = worker_bundle_for_doctor(hosts, Path(scratch))
        checks = [bundle] if isinstance(bundle, Check) else []
        bundle = bundle if isinstance(bundle, WorkerBundle) else None
        results = on_hosts(hosts, lambda host: parse(run_ssh(host, "bash -s", stdin=probe_script(host, bundle))))
        for host in hosts:
            checks += host_checks(host, results[host.label], bundle, config.base_dir, config.engine)
            checks.append(known_hosts_check(host, fix))
    return checks
