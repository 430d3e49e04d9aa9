"""`python -m musicsweep.auto_pull [SWEEP]`: kept for the README and users' scripts (see `sweep.follow`)."""

from musicsweep.sweep.follow import main

if __name__ == "__main__":
    raise SystemExit(main())
