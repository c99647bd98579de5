"""Write the README's benchmark tables from the files the benchmarks wrote (never by hand).

The README marks each generated block with a pair of HTML comments::

    <!-- table: benchmarks/results/llm_speed.md -->
    ... (replaced by this script) ...
    <!-- /table -->

The text between them is replaced by the named results file (a Markdown file written by a script in
``benchmarks/``), without its first-level title line; its own section headings are demoted below the
README section that holds the block (``## Notes`` in a results file becomes ``#### Notes``), so a
generated block never opens a new top-level section of the README. ``--check`` only compares and exits 1 when the
README is out of date (the test suite runs it), so a figure in a README table always comes from a
results file that a benchmark wrote.

Usage::

    python scripts/readme_tables.py            # rewrite README.md in place
    python scripts/readme_tables.py --check    # exit 1 if README.md differs from the results files
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- table: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _body(path: pathlib.Path) -> str:
    if not path.is_file():
        raise SystemExit(f"readme_tables: results file {path} not found; run the benchmark that writes it")
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    lines = [_demote(line) for line in lines]
    return "\n".join(lines) + "\n"


def _demote(line: str) -> str:
    """``## Notes`` -> ``#### Notes``: headings of a results file sit under a README subsection."""
    m = re.match(r"(#{1,4}) ", line)
    return "##" + line if m else line


def render(text: str, root: pathlib.Path = ROOT) -> str:
    """Return ``text`` with every marked block replaced by its results file."""
    return BLOCK.sub(lambda m: m.group(1) + _body(root / m.group("path")) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    args = ap.parse_args(argv)
    readme = pathlib.Path(args.readme)
    old = readme.read_text(encoding="utf-8")
    new = render(old, readme.parent)
    if args.check:
        if new != old:
            print(f"{readme}: benchmark tables out of date; run python scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        readme.write_text(new, encoding="utf-8")
    print(f"{readme}: {len(BLOCK.findall(old))} generated block(s) up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
