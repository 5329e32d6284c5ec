"""``python -m clipbayes.sweep``: the same as ``clipbayes-sweep`` (clipbayes/sweep/cli.py)."""
import sys

from clipbayes.sweep.cli import main

sys.exit(main())
