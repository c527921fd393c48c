"""`python -m engine.cli …`: the CLI without main.py (an installed package; the launcher of several processes uses it
when there is no checkout, engine/train/launch.py)."""

from __future__ import annotations

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
