"""What runs on a host: `python -m musicsweep.worker SPEC...` (see `loop`)."""
