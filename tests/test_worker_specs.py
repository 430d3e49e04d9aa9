"""Loading job specs (musicsweep/worker/specs.py): checked before unpickling, a bad spec fails only its own job;
and the spec lists a sweep no longer needs removed (musicsweep/sweep/speclists.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import pytest

from musicsweep.digests import MISMATCH, DigestMismatch, sha256_hex, spec_list_text
from musicsweep.job import Job
from musicsweep.layout import SweepDir, spec_list_name
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.store.local import LocalStore
from musicsweep.store.shards import put_specs
from musicsweep.sweep.speclists import prune_spec_lists
from musicsweep.worker.specs import SpecBook, load_specs
from tests.helpers import MakesFolder


def write_launch(tmp_path: Path, count: int = 3) -> tuple[SweepDir, list[Job], list[Path], str]:
    """Specs and their launch's list as the launcher writes them; returns the list's digest."""
    sweep = SweepDir(tmp_path, "sw")
    jobs = [Job("sw", "lofi piano", 1.0, "tiny", seed, "lofi") for seed in range(count)]
    digests = sweep.write_specs(jobs, set())
    data = spec_list_text(digests)
    sweep.spec_list(sha256_hex(data)).write_bytes(data)
    return sweep, jobs, [sweep.job(job).spec for job in jobs], sha256_hex(data)


def test_a_truncated_spec_fails_only_its_own_job(tmp_path: Path) -> None:
    paths = []
    for seed in range(3):
        good = Job("sw", "lofi piano", 1.0, "tiny", seed, "lofi")
        path = tmp_path / "jobs" / f"{good.job_id}.pkl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(cloudpickle.dumps(good))
        paths.append(path)
    paths[1].write_bytes(paths[1].read_bytes()[:20])
    loaded = load_specs(paths)
    assert [j.seed for j in loaded.jobs] == [0, 2]
    assert list(loaded.broken) == [paths[1].stem]
    reason = loaded.broken[paths[1].stem]
    assert reason.startswith(f"{paths[1]}: cannot load job spec: ") and "\n" not in reason


def test_a_swapped_spec_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    sweep, jobs, paths, list_sha256 = write_launch(tmp_path)
    made = tmp_path / "made-by-the-pickle"
    paths[1].write_bytes(pickle.dumps(MakesFolder(made)))
    book = SpecBook.of_launch(sweep.root, "sw", None, list_sha256)
    loaded = load_specs(paths, book)
    assert not made.exists()
    assert loaded.jobs == [jobs[0], jobs[2]]
    reason = loaded.broken[jobs[1].job_id]
    assert reason.startswith(f"{MISMATCH} {paths[1]}: its sha256 is ") and "\n" not in reason


def test_a_swapped_list_refuses_every_spec(tmp_path: Path) -> None:
    sweep, jobs, paths, list_sha256 = write_launch(tmp_path)
    made = tmp_path / "made-by-the-pickle"
    paths[0].write_bytes(pickle.dumps(MakesFolder(made)))
    forged = spec_list_text({jobs[0].job_id: sha256_hex(paths[0].read_bytes())})
    sweep.spec_list(list_sha256).write_bytes(forged)  # a list vouching for the swapped spec
    loaded = load_specs(paths, SpecBook.of_launch(sweep.root, "sw", None, list_sha256))
    assert not made.exists() and loaded.jobs == []
    assert all(reason.startswith(f"{MISMATCH} the spec list ") for reason in loaded.broken.values())
    sweep.spec_list(list_sha256).unlink()
    missing = load_specs(paths, SpecBook.of_launch(sweep.root, "sw", None, list_sha256))
    gone = f"{MISMATCH} any spec: the launch's spec list {sweep.spec_list(list_sha256)} is missing"
    assert set(missing.broken.values()) == {gone}


def test_any_spec_of_the_sweep_is_found_by_id_in_the_store_and_checked(tmp_path: Path) -> None:
    """A worker may take another shard's clip: the list covers it, read from the store when not local."""
    sweep, jobs, paths, list_sha256 = write_launch(tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    book = SpecBook.of_launch(tmp_path / "elsewhere" / "sw", "sw", store, list_sha256)
    assert cloudpickle.loads(book.spec_bytes(jobs[2].job_id)) == jobs[2]
    paths[2].write_bytes(pickle.dumps(MakesFolder(tmp_path / "made")))
    with pytest.raises(DigestMismatch, match=f"^{MISMATCH} sw/jobs/{jobs[2].job_id}.pkl: "):
        book.spec_bytes(jobs[2].job_id)


def test_the_launcher_reads_no_spec_swapped_under_it(tmp_path: Path) -> None:
    sweep, jobs, paths, _ = write_launch(tmp_path)
    digest = sha256_hex(paths[0].read_bytes())
    assert sweep.read_spec(jobs[0].job_id, digest) == jobs[0]
    made = tmp_path / "made"
    paths[0].write_bytes(pickle.dumps(MakesFolder(made)))
    with pytest.raises(DigestMismatch, match=f"^{MISMATCH} {paths[0]} "):
        sweep.read_spec(jobs[0].job_id, digest)
    assert not made.exists()


def test_a_launch_keeps_the_spec_lists_of_the_launches_its_jobs_name(tmp_path: Path) -> None:
    """L1's jobs were all launched again by L2 (a worker of L1 that starts late runs nothing), L2
    and L3 each still hold a job: L1's list goes, here and in the store; at a follow's end only
    L3's is left; a launch that never named its list (an older manifest) keeps them all."""
    sweep = SweepDir(tmp_path / "runs", "sw")
    store = LocalStore(str(tmp_path / "store"))
    digests = [sha256_hex(bytes([n])) for n in range(3)]
    for digest in digests:
        sweep.spec_list(digest).parent.mkdir(parents=True, exist_ok=True)
        sweep.spec_list(digest).write_bytes(b"")
        put_specs(store, sweep, [], digest)
    launches = [LaunchRecord(f"L{n + 1}", 0.0, 1, specs_sha256=digest) for n, digest in enumerate(digests)]
    jobs = {"a": JobEntry(worker=0, launch="L2"), "b": JobEntry(worker=0, launch="L3")}
    manifest = Manifest(sweep="sw", jobs=jobs, launches=launches)

    def lists() -> tuple[set[str], set[str]]:
        here = {name for name in sweep.job_files() if name.startswith("specs-")}
        return here, {key.rsplit("/", 1)[1] for key in store.list("sw/jobs/")}

    old = Manifest(sweep="sw", jobs=jobs, launches=[LaunchRecord("L2", 0.0, 1), *launches[2:]])
    prune_spec_lists(sweep, store, old)
    assert lists() == ({spec_list_name(digest) for digest in digests},) * 2
    prune_spec_lists(sweep, store, manifest)
    assert lists() == ({spec_list_name(digest) for digest in digests[1:]},) * 2
    prune_spec_lists(sweep, store, manifest, only_latest=True)
    assert lists() == ({spec_list_name(digests[2])},) * 2
