"""`python -m medlib`: the same as the `medlib` command."""

from __future__ import annotations

from medlib.cli import main

raise SystemExit(main())
