"""`python -m musicsweep.report SWEEP`."""

from musicsweep.cli.report import main

raise SystemExit(main())
