"""`python -m musicsweep.launch`: kept for users' scripts (see `cli.launch`)."""

from musicsweep.cli.launch import main

if __name__ == "__main__":
    raise SystemExit(main())
