"""``python -m recsys``: the project's one command line."""

from recsys.cli import main

raise SystemExit(main())
