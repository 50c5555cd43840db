"""``python -m memwatch`` is the same as the ``memwatch`` command."""

from memwatch.cli import main

raise SystemExit(main())
