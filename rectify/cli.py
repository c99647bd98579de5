"""Command line: ``rectify demo`` (and, as they land, ``rectify compare CONFIG.toml``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rectify`` command.

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    rectify ...
    0
    """
    from . import __version__

    parser = argparse.ArgumentParser(prog="rectify", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="compare classical, naive, PPI and PPI++ on the bundled survey")
    p_demo.add_argument("--n-pilot", type=int, default=200)
    p_demo.add_argument("--seed", type=int, default=1)
    p_demo.add_argument("--level", type=float, default=0.95)
    args = parser.parse_args(argv)
    if args.version:
        print(f"rectify {__version__}")
        return 0
    if args.command == "demo":
        from .demo import print_demo

        print(print_demo(args.n_pilot, args.seed, args.level))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
