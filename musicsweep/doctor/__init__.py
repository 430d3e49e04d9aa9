"""`musicsweep doctor`: every prerequisite of a launch checked in one run, reported as one table.

One module per concern (`env`, `store`, `ssh`, `slurm`, `ec2`, `runpod`, `models`), each a
function from the config to a list of `Check`s that never raises for a failed check, so one run
names every problem. `--fix` does only what is safe and reversible: create the store folder,
install the worker extra into this checkout's venv, add a host key to known_hosts after printing
its fingerprint. Cloud SDKs and torch are imported inside the checks that need them.
"""
