"""``autobyteus-dump`` / ``python -m tools.dump``: the store inspector, ``autobyteus-store dump``.

Same options as ``autobyteus-store dump`` (see ``--help``): one consistent snapshot of the store
chosen by PERSISTENCE_PROVIDER, AUTOBYTEUS_DATA_DIR and AUTOBYTEUS_DATABASE_URL (flags win), as
JSON Lines on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tools.cli import add_dump_arguments, run
from tools.common import EXIT_CODES_HELP


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="autobyteus-dump",
        description="Dump the store as JSON Lines (the same as `autobyteus-store dump`).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dump_arguments(parser)
    args = parser.parse_args(argv)
    args.command = "dump"
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
