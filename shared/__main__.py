"""Allow `python -m tuskit`, which tests use to start real server processes."""

from tuskit.cli import main

raise SystemExit(main())
