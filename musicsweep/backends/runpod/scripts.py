"""The bash a pod runs: its start command, and the end of its worker's script."""

from __future__ import annotations

import shlex

# The pod's start command (base64, since the SDK does not escape GraphQL strings): decode the
# base64 PUBLIC_KEY, then hand over to the image's own /start.sh (sshd, /etc/rp_environment);
# images without one get authorized_keys, the RUNPOD_ variables in /etc/rp_environment, and sshd.
BOOT_SCRIPT = """\
PUBLIC_KEY="$(printf %s "$PUBLIC_KEY" | base64 -d)"; export PUBLIC_KEY
if [ -x /start.sh ]; then exec /start.sh; fi
mkdir -p ~/.ssh /run/sshd && chmod 700 ~/.ssh
printf '%s\\n' "$PUBLIC_KEY" >>~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys
for name in RUNPOD_POD_ID RUNPOD_API_KEY; do printf 'export %s=%q\\n' "$name" "${!name:-}"; done >/etc/rp_environment
chmod 600 /etc/rp_environment
exec /usr/sbin/sshd -D
"""
# Appended to the worker's script: the pod terminates itself once its worker has exited. A worker
# that ended early first marks its unfinished clips failed: once the pod is gone, auto_pull could
# no longer tell them from the jobs of a pod that was lost.
SELF_TERMINATE = """\
if [ "$worker_status" -ne 0 ]; then {python} -m musicsweep.worker.finish "$worker_status" {specs}; fi
# RunPod backstop: terminate this pod with its own pod-scoped key (RUNPOD_POD_ID, RUNPOD_API_KEY).
if [ -r {env_file} ]; then . {env_file}; fi
{python} -m musicsweep.backends.runpod.api terminate-self
"""


def self_terminate(python: str, specs: list[str], env_file: str) -> str:
    """`SELF_TERMINATE` for one worker: its interpreter, its specs and the pod's env file, quoted."""
    quoted = " ".join(shlex.quote(spec) for spec in specs)
    return SELF_TERMINATE.format(env_file=shlex.quote(env_file), python=shlex.quote(python), specs=quoted)
