"""The command line: `qdrant-collection-operator run | crds`."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="qdrant-collection-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--out", type=Path, default=Path("crds"))
    args = parser.parse_args(argv)
    if args.command == "crds":
        from . import crdgen

        for path in crdgen.write_all(args.out):
            print(path)


if __name__ == "__main__":
    main()
