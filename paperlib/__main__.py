"""``python -m paperlib describe|run``: see :mod:`paperlib.cli`."""

from paperlib.cli import main

raise SystemExit(main())
