"""``python -m tools.bench [--quick] [--only NAME ...] [--out DIR]``."""

import sys

from tools.bench.runner import main

sys.exit(main())
