"""SHA-256 digests of what a worker loads: the spec list a launch vouches for, and the checks.

A spec is a cloudpickle, and unpickling runs code, so a worker loads only bytes whose digest the
launcher recorded. The launcher hashes each spec from the bytes it serialized and writes every
digest of the sweep into one list per launch (`jobs/specs-{digest}.sha256`, named by its own
digest, in `sha256sum`'s format, so `sha256sum -c` checks a folder by hand). The list's own digest
travels in the worker's environment (`contract.SPECS_SHA256`), which comes from the launcher, never
from the store: the list can sit anywhere a worker can read; the env vouches for it, it for each spec.
"""

from __future__ import annotations

import hashlib

from musicsweep.errors import MusicsweepError

MISMATCH = "spec digest mismatch: refusing to load"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DigestMismatch(MusicsweepError):
    """Bytes whose digest is not the one recorded: nothing of them may be loaded."""


def spec_list_text(digests: dict[str, str]) -> bytes:
    """`{sha256}  {job_id}.pkl` per line, sorted by job id: the same digests give the same bytes."""
    return "".join(f"{digests[job_id]}  {job_id}.pkl\n" for job_id in sorted(digests)).encode()


def parse_spec_list(data: bytes, where: str) -> dict[str, str]:
    """Job id -> spec digest, from `spec_list_text`'s bytes (already checked against their digest)."""
    digests = {}
    for number, line in enumerate(data.decode().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name.endswith(".pkl"):
            raise DigestMismatch(f"{MISMATCH} {where}: line {number} is not `SHA256  JOB_ID.pkl`")
        digests[name.removesuffix(".pkl")] = digest
    return digests


def check_digest(data: bytes, expected: str, what: str) -> bytes:
    """`data` when its SHA-256 is `expected`; raises DigestMismatch (one line naming `what`) otherwise."""
    actual = sha256_hex(data)
    if actual != expected:
        raise DigestMismatch(f"{MISMATCH} {what}: its sha256 is {actual[:16]}…, the launch recorded {expected[:16]}…")
    return data
