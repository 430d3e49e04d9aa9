"""`python -m musicsweep.worker SPEC...`."""

from musicsweep.worker.loop import main

raise SystemExit(main())
