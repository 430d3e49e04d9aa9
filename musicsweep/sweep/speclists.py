"""Remove the spec lists (`jobs/specs-DIGEST.sha256`, and their copies in the store) that no worker
can still need, so a sweep relaunched many times does not pile up one list of every spec per launch.

A worker reads its launch's list once, as it starts (`worker.specs.SpecBook`), so a list matters
while a worker of its launch may still start: queued, requeued (a SLURM task), or booting. The rule:
- a successful launch keeps its own list and those of the launches some job's latest attempt is
  (`JobEntry.launch`: their workers may still start or be requeued for those jobs), and removes the
  others. A worker of an older attempt that starts anyway finds no list and refuses every spec: it
  runs nothing, and its `.failed` markers, of an attempt that is no longer the latest, never count;
- a follow that ended with every job finished keeps only the latest launch's list.
Both run under the sweep's launch lock, so a launch that is writing its list is never looked at
halfway. A launch recorded before launches named their list (`LaunchRecord.specs_sha256` empty)
makes the first rule remove nothing.
"""

from __future__ import annotations

from musicsweep.layout import JOBS_DIR, SweepDir, spec_list_name
from musicsweep.manifest import Manifest
from musicsweep.store.base import Store

PREFIX, SUFFIX = "specs-", ".sha256"


def lists_in_use(manifest: Manifest, only_latest: bool) -> set[str] | None:
    """The file names of the lists to keep; None when a launch that may need one never named it."""
    if not manifest.launches:
        return None
    latest = manifest.launches[-1]
    named = {latest.id} if only_latest else {entry.launch for entry in manifest.jobs.values()} | {latest.id}
    digests = [record.specs_sha256 for record in manifest.launches if record.id in named]
    return None if not all(digests) else {spec_list_name(digest) for digest in digests}


def prune_spec_lists(sweep: SweepDir, store: Store, manifest: Manifest, only_latest: bool = False) -> None:
    """Remove the lists `lists_in_use` does not keep, here and in the store (one listing of its spec
    lists: EC2 and Ray keep them there). Call it under the launch lock, with the manifest as it is now."""
    keep = lists_in_use(manifest, only_latest)
    if keep is None:
        return
    for name in sweep.job_files():
        if name.startswith(PREFIX) and name.endswith(SUFFIX) and name not in keep:
            (sweep.root / JOBS_DIR / name).unlink(missing_ok=True)
    folder = f"{sweep.name}/{JOBS_DIR}/"
    for key in store.list(folder + PREFIX):
        if key.endswith(SUFFIX) and key.removeprefix(folder) not in keep:
            store.delete(key)
