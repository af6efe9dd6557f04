"""The command line: `qdrant-collection-operator run | crds | docs | --version`."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from . import __version__

    parser = argparse.ArgumentParser(prog="qdrant-collection-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--out", type=Path, default=Path("crds"))
    docs = commands.add_parser("docs", help="write the API reference (Markdown) generated from the models")
    docs.add_argument("--out", type=Path, default=Path("docs/api-reference.md"))
    run = commands.add_parser("run", help="run the operator against the cluster in KUBECONFIG (or in-cluster)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch only these (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)")
    run.add_argument("--bind", default="127.0.0.1", help="address of the metrics and health endpoints")
    run.add_argument("--settings", type=Path, help="operator settings file (TOML); reloaded when it changes")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--log-format", choices=["text", "json"], help="default: the settings' log_format")
    args = parser.parse_args(argv)
    if args.command == "crds":
        from . import crdgen

        for path in crdgen.write_all(args.out):
            print(path)
    elif args.command == "docs":
        from . import docsgen

        print(docsgen.write(args.out))
    elif args.command == "run":
        import kopf

        from . import logs
        from .config import load_settings
        from .handlers import operator
        from .redact import SecretValues

        log_format = args.log_format or load_settings(args.settings).log_format.value
        kopf_format = kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL
        kopf.configure(verbose=args.verbose, log_format=kopf_format)
        secrets = SecretValues()  # what the operator reads from Secrets never reaches a log line
        logs.install(json=log_format == "json", secrets=secrets)
        operator.main_loop(namespaces=args.namespace, bind=args.bind, settings_path=args.settings, secrets=secrets)


if __name__ == "__main__":
    main()
