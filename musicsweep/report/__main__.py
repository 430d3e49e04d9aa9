"""`python -m musicsweep.report SWEEP`."""

from musicsweep.report.build import main

raise SystemExit(main())
