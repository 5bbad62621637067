"""``python -m tools <command>``: the same as ``autobyteus-store <command>``."""

import sys

from tools.cli import main

sys.exit(main())
