"""Print the README "Released checkpoints" section (Markdown) from the checkpoint registry.

python scripts/gen_checkpoint_table.py            # the whole section
python scripts/gen_checkpoint_table.py --heading "### Weights"
"""

from __future__ import annotations

import argparse

from equivision.checkpoints.registry import records
from equivision.checkpoints.table import markdown_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heading", default="## Released checkpoints", help="Markdown heading line")
    args = parser.parse_args(argv)
    print(markdown_section(records(), heading=args.heading), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
