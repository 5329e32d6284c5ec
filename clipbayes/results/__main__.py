"""``python -m clipbayes.results OUTPUT_ROOT [options]``."""
import sys

from clipbayes.results.cli import main

sys.exit(main())
