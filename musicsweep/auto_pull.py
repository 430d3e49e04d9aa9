"""`python -m musicsweep.auto_pull [SWEEP]`: kept for the README and users' scripts (see `cli.pull`)."""

from musicsweep.cli.pull import main

if __name__ == "__main__":
    raise SystemExit(main())
