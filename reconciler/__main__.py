"""`python -m reconciler`: the same command as the `reconciler` console script."""

from reconciler.cli.main import main

raise SystemExit(main())
