"""``python -m paperlib describe|run|bench|weights|suite|params``: see :mod:`paperlib.cli`."""

from paperlib.cli import main

raise SystemExit(main())
