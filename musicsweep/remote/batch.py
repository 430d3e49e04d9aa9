"""Where the SLURM backend runs its client commands (sbatch, squeue, scancel, ls): on this machine
when it is the login node, or on a login node reached through an SSH host entry.

Either way a caller gets each command's exit status, stdout and stderr, so sbatch's own messages
reach the user; over SSH several commands share one round trip (`musicsweep.remote.ssh.run_ssh`), and
the host's forwarded `env` (e.g. `SLURM_CONF`) travels on ssh's stdin, never in argv.
"""

from __future__ import annotations

import shlex
import subprocess

from musicsweep.errors import MusicsweepError
from musicsweep.remote.ssh import SSHHost, env_exports, run_ssh

STDERR_MARK = "#musicsweep-stderr"
STATUS_MARK = "#musicsweep-status"


def run_here(commands: list[list[str]], stdin: str | None = None) -> list[subprocess.CompletedProcess]:
    """Each command as a child process; FileNotFoundError when the client is not installed."""
    return [subprocess.run(c, input=stdin, capture_output=True, text=True, check=False) for c in commands]


def remote_script(host: SSHHost, commands: list[list[str]], stdin: str | None) -> str:
    """Bash that runs each command with `stdin` as a here-document and reports its stderr and status."""
    lines = [env_exports(host.env), "err=$(mktemp) || exit 1; trap 'rm -f \"$err\"' EXIT"]
    redirect = f"<<'MUSICSWEEP_STDIN'\n{stdin}\nMUSICSWEEP_STDIN" if stdin is not None else "</dev/null"
    for command in commands:
        lines.append(f'{shlex.join(command)} 2>"$err" {redirect}')
        lines.append(f'status=$?; echo; echo "{STDERR_MARK}"; cat "$err"; echo; echo "{STATUS_MARK} $status"')
    return "\n".join(lines) + "\n"


def parse_remote(output: str, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Split `remote_script`'s output back into one result per command."""
    results = []
    stdout: list[str] = []
    stderr: list[str] = []
    current = stdout
    for line in output.splitlines():
        if line == STDERR_MARK:
            current = stderr
        elif line.startswith(STATUS_MARK):
            command = commands[len(results)]
            status = int(line.split()[-1])
            results.append(subprocess.CompletedProcess(command, status, "\n".join(stdout), "\n".join(stderr)))
            stdout, stderr = [], []
            current = stdout
        else:
            current.append(line)
    return results


def run_on_login(
    host: SSHHost, commands: list[list[str]], stdin: str | None = None
) -> list[subprocess.CompletedProcess]:
    """All `commands` in one ssh round trip; raises HostUnreachable when the login node does not answer."""
    output = run_ssh(host, "bash -s", stdin=remote_script(host, commands, stdin), what="SLURM command")
    results = parse_remote(output, commands)
    if len(results) != len(commands):
        raise MusicsweepError(f"login node {host.label}: no answer for `{shlex.join(commands[len(results)])}`")
    return results
