#!/usr/bin/env python
"""Train or evaluate a prompt learner on CLIP with CoOp's command line; see clipbayes/cli.py and README.md."""
import sys

from clipbayes.cli import main

if __name__ == "__main__":
    sys.exit(main())
