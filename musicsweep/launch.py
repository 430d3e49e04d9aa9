"""`python -m musicsweep.launch`: kept for users' scripts (see `cli.hydra_app`)."""

from musicsweep.cli.hydra_app import main

if __name__ == "__main__":
    raise SystemExit(main())
