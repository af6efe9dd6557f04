"""kubectl qdrant: the operator's resources from kubectl. Commands: status, plan, approve, pause, resume, snapshot,
restore, logs (docs/kubectl-plugin.md). Global options as kubectl's: --kubeconfig, --context, -n/--namespace."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..api import API_VERSION
from ..api.snapshot import RESTORE_FROM
from ..k8s.api import kopf_peerings
from ..reconcile.collection_step import PAUSED
from ..reconcile.outcome import ReconcileError
from ..reconcile.snapshot import source_snapshot
from ..reconcile.target import APPROVE_PLAN
from . import views
from .client import JSON_PATCH, MERGE_PATCH, Kube, resource_path
from .errors import ApiError, PluginError
from .kubeconfig import login

VC, SNAPSHOTS = "vectorcollections", "collectionsnapshots"
PEERING = "qdrant-collection-operator"  # QDRANT_OPERATOR_PEERING_NAME in the manifests and the chart
OPERATOR_NAMESPACE = "qdrant-operator"
WAIT_POLL_SECONDS = 1.0


def _collection(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    body = kube.find(resource_path(VC, namespace, name))
    if body is None:
        raise PluginError(f"VectorCollection {namespace}/{name} not found")
    return body


def _annotate(kube: Kube, namespace: str, name: str, annotations: dict[str, str | None], what: str) -> None:
    patch = {"metadata": {"annotations": annotations}}
    kube.patch(resource_path(VC, namespace, name), patch, MERGE_PATCH, f"{what} VectorCollection {namespace}/{name}")


def status(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    if args.name and args.all_namespaces:
        raise PluginError("give a connection NAME with -n NAMESPACE, not with -A")
    scope = None if args.all_namespaces else namespace
    connections = kube.items(resource_path("qdrantconnections", scope), "listing QdrantConnections")
    only = f"{namespace}/{args.name}" if args.name else None
    if only and not any(f"{c['metadata']['namespace']}/{c['metadata']['name']}" == only for c in connections):
        raise PluginError(f"QdrantConnection {only} not found")
    collections = kube.items(resource_path(VC, scope), "listing VectorCollections")
    snapshots = kube.items(resource_path(SNAPSHOTS, scope), "listing CollectionSnapshots")
    roots = views.tree(connections, collections, snapshots, only)
    if args.output == "json":
        print(json.dumps({"connections": [root.as_json() for root in roots]}, indent=2))
    elif roots:
        print(views.render(roots))
    else:
        print("No QdrantConnections or VectorCollections " + ("found." if scope is None else f"in namespace {scope}."))


def approve(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    body = _collection(kube, namespace, args.name)
    plan = views.pending_plan(body)
    print(views.describe_plan(plan))
    what = f"VectorCollection {namespace}/{args.name}"
    if (body["metadata"].get("annotations") or {}).get(APPROVE_PLAN) == plan["hash"]:
        print(f"plan {plan['hash']} of {what} is approved already: the operator applies it")
        return
    try:
        kube.patch(
            resource_path(VC, namespace, args.name),
            views.approval_patch(body, plan),
            JSON_PATCH,
            f"approving plan {plan['hash']} of {what}",
        )
    except ApiError as exc:
        if exc.status == 422:  # a `test` op failed: the object changed between the read and the patch
            raise PluginError(
                f"{what} changed while approving (a new plan or spec): nothing was approved; run approve again"
            ) from None
        raise
    print(f"approved plan {plan['hash']} of {what}: the operator applies it now")


def plan(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    """The plans a manifest's VectorCollections would get if applied now: the hash to approve in the same commit."""
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "VectorCollection"]
    except (OSError, yaml.YAMLError) as exc:
        raise PluginError(f"cannot read {args.filename}: {exc}") from None
    if not docs:
        raise PluginError(f"{args.filename} holds no VectorCollection")
    previews = []
    for doc in docs:
        meta = doc.get("metadata") or {}
        live = kube.find(resource_path(VC, meta.get("namespace") or namespace, meta.get("name") or "-"))
        previews.append(views.preview(doc, namespace, live))
    if args.output == "json":
        print(json.dumps({"plans": [p.as_json() for p in previews]}, indent=2))
    else:
        print("\n".join(views.describe_preview(p) for p in previews))
    stale = [problem for p in previews if (problem := views.stale_approval(p))]
    if args.check and stale:
        raise PluginError("; ".join(stale))


def pause(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    _annotate(kube, namespace, args.name, {PAUSED: "true"}, "pausing")
    print(f"VectorCollection {namespace}/{args.name} paused: the operator leaves it and its collection alone")


def resume(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    _annotate(kube, namespace, args.name, {PAUSED: None}, "resuming")
    print(f"VectorCollection {namespace}/{args.name} resumed: the operator reconciles it again")


def snapshot(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    _collection(kube, namespace, args.name)
    body = {
        "apiVersion": API_VERSION,
        "kind": "CollectionSnapshot",
        "metadata": {"generateName": f"{args.name[:57]}-", "namespace": namespace},
        "spec": {"collectionRef": {"name": args.name}},
    }
    created = kube.create(resource_path(SNAPSHOTS, namespace), body, f"creating a CollectionSnapshot of {args.name}")
    key = f"{namespace}/{created['metadata']['name']}"
    print(f"CollectionSnapshot {key} created: a one-off snapshot of VectorCollection {namespace}/{args.name}")
    if args.wait:
        _wait_completed(kube, namespace, created["metadata"]["name"], args.timeout)
        print(f"CollectionSnapshot {key} completed")


def _wait_completed(kube: Kube, namespace: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        body = kube.get(resource_path(SNAPSHOTS, namespace, name), f"reading CollectionSnapshot {namespace}/{name}")
        node = views.snapshot_node(body)
        if node.details.get("phase") == "Completed":
            return
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Stalled" and c.get("status") == "True" for c in conditions):
            raise PluginError(f"CollectionSnapshot {namespace}/{name} is Stalled ({node.reason}): {node.message}")
        if time.monotonic() > deadline:
            raise PluginError(
                f"CollectionSnapshot {namespace}/{name} not completed after {timeout:g}s "
                f"(phase {node.details.get('phase', '-')}, {node.reason or 'no verdict yet'})"
            )
        time.sleep(WAIT_POLL_SECONDS)


def restore(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    body = _collection(kube, namespace, args.name)
    resource, _, file = args.source.partition("/")
    if not resource:
        raise PluginError(f"--from {args.source!r}: give SNAPSHOT (a CollectionSnapshot) or SNAPSHOT/FILE")
    source = kube.find(resource_path(SNAPSHOTS, namespace, resource))
    try:
        value = source_snapshot(resource, source, file or None).ref
    except ReconcileError as exc:
        raise PluginError(exc.message) from None
    if (body.get("status") or {}).get("restoredFrom") == value:
        raise PluginError(
            f"VectorCollection {namespace}/{args.name} was restored from {value} already: the operator restores "
            "once per snapshot; name another snapshot"
        )
    _annotate(kube, namespace, args.name, {RESTORE_FROM: value}, "restoring")
    print(
        f"VectorCollection {namespace}/{args.name}: restore from {value} requested; the operator restores it in "
        f"place and records it in status.restoredFrom (watch: kubectl qdrant status -n {namespace})"
    )


def logs(kube: Kube, args: argparse.Namespace, namespace: str) -> None:
    name = urllib.parse.quote(args.peering, safe="")
    where = f"ClusterKopfPeering {args.peering}"
    peering = kube.find(f"{kopf_peerings(None)}/{name}")
    if peering is None:
        where = f"KopfPeering {args.peering} in namespace {namespace}"
        peering = kube.find(f"{kopf_peerings(namespace)}/{name}")
    if peering is None:
        raise PluginError(
            f"no ClusterKopfPeering {args.peering} and no {where}: without peering (QDRANT_OPERATOR_PEERING_NAME) "
            f"there is one replica: kubectl logs -n {args.operator_namespace} deployment/qdrant-collection-operator"
        )
    try:
        peer = views.active_peer(peering.get("status") or {}, datetime.datetime.now(datetime.UTC))
    except PluginError as exc:
        raise PluginError(f"{where}: {exc}") from None
    print(
        f"active replica {peer.identity} (priority {peer.priority}, {where}): Pod {args.operator_namespace}/{peer.pod}",
        file=sys.stderr,
    )
    params = {"follow": "true"} if args.follow else {}
    if args.tail is not None:
        params["tailLines"] = str(args.tail)
    if args.container:
        params["container"] = args.container
    out = sys.stdout.buffer
    for chunk in kube.stream_log(args.operator_namespace, peer.pod, params):
        out.write(chunk)
        out.flush()


COMMANDS: dict[str, Callable[[Kube, argparse.Namespace, str], None]] = {
    "status": status,
    "plan": plan,
    "approve": approve,
    "pause": pause,
    "resume": resume,
    "snapshot": snapshot,
    "restore": restore,
    "logs": logs,
}


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """kubectl's own options, accepted before the command and after it (`kubectl qdrant -n x status`)."""
    default: Any = None if defaults else argparse.SUPPRESS
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0 or (kind is float and value == 0):
            raise argparse.ArgumentTypeError(f"{text}: must be {'above' if kind is float else 'at least'} 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message for an unparsable value
    return parse


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="kubectl qdrant", description=__doc__)
    main.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection_options(main, defaults=True)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _connection_options(sub, defaults=False)
        return sub

    st = command("status", "the tree connection -> collections -> snapshots with health, plan, drift, Ready")
    st.add_argument("name", nargs="?", metavar="NAME", help="one QdrantConnection (default: all)")
    st.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    pl = command("plan", "the plan a manifest would get if applied now, and its hash: approve it in the same commit")
    pl.add_argument("-f", "--filename", required=True, metavar="FILE", help="the manifest (- reads standard input)")
    pl.add_argument("-o", "--output", choices=["text", "json"], default="text")
    pl.add_argument(
        "--check",
        action="store_true",
        help="fail when the manifest approves a plan other than the one it would get (a CI gate)",
    )
    for name, help in (
        ("approve", "show the plan awaiting approval and approve exactly that hash"),
        ("pause", "stop reconciling a VectorCollection (the paused annotation)"),
        ("resume", "reconcile a paused VectorCollection again"),
    ):
        command(name, help).add_argument("name", metavar="NAME", help="the VectorCollection")
    snap = command("snapshot", "take a one-off snapshot now (a new CollectionSnapshot)")
    snap.add_argument("name", metavar="NAME", help="the VectorCollection")
    snap.add_argument("--wait", action="store_true", help="wait until the snapshot is completed")
    snap.add_argument("--timeout", type=_positive(float), default=300.0, help="seconds --wait waits (default 300)")
    rest = command("restore", "restore a VectorCollection in place from a snapshot (the restore-from annotation)")
    rest.add_argument("name", metavar="NAME", help="the VectorCollection")
    rest.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SNAPSHOT[/FILE]",
        help="a CollectionSnapshot, and one of its snapshot files (default: its newest)",
    )
    lg = command("logs", "the active operator replica's log (found through the kopf peering object)")
    lg.add_argument("-f", "--follow", action="store_true", help="stream new lines as they come")
    lg.add_argument("--tail", type=_positive(int), help="only the last N lines")
    lg.add_argument("-c", "--container", help="the container (default: the Pod's only one)")
    lg.add_argument("--peering", default=PEERING, help=f"the kopf peering object's name (default {PEERING})")
    lg.add_argument(
        "--operator-namespace",
        default=OPERATOR_NAMESPACE,
        help=f"the operator's namespace, where its Pods run (default {OPERATOR_NAMESPACE})",
    )
    return main


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        info, context_namespace = login(args.kubeconfig, args.context)
        kube = Kube(info)
        try:
            COMMANDS[args.command](kube, args, args.namespace or context_namespace)
        finally:
            kube.close()
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `kubectl qdrant logs | head`: the reader left
        sys.exit(0)


if __name__ == "__main__":
    main()
