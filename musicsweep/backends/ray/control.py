"""The doctor's probe inside the cluster: `python -m musicsweep.backends.ray.control KEY`.

A Ray task reads KEY from the store the job's environment names (`contract.py`) and writes
`KEY.seen` back, so `musicsweep doctor` knows that a node reaches the store.
"""

from __future__ import annotations

import os
import sys

SEEN_SUFFIX = ".seen"


def read_and_answer(key: str) -> str:
    """On a node: the store from the launch's environment, read and written."""
    from musicsweep.contract import LaunchEnv
    from musicsweep.store import open_store

    store = open_store(LaunchEnv.from_env(os.environ).store)
    store.put_bytes(key + SEEN_SUFFIX, store.get_bytes(key))
    return key + SEEN_SUFFIX


def probe_store(key: str) -> int:
    import ray

    ray.init(log_to_driver=False)
    print(f"[musicsweep] wrote {ray.get(ray.remote(num_cpus=0)(read_and_answer).remote(key))}")
    return 0


def main(argv: list[str]) -> int:
    return probe_store(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
