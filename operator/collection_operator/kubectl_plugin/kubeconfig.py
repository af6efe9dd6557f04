"""Where the plugin's calls go and as whom: the kubeconfig as kubectl reads it (KUBECONFIG's files merged, the
first value winning; --kubeconfig instead; --context or the current context), or the Pod's service account.

kopf's own kubeconfig login (the operator's) knows only the current context, so the plugin reads the file
itself and hands kopf's ConnectionInfo the result; TLS and the Authorization header are then kopf's code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kopf
import yaml

from .errors import PluginError

EXEC_TIMEOUT_SECONDS = 60
# File names in a kubeconfig are relative to that file, as kubectl resolves them.
_FILES = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def _paths(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    listed = os.environ.get("KUBECONFIG")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    default = Path("~/.kube/config").expanduser()
    return [default] if default.exists() else []


def _merged(paths: list[Path]) -> dict[str, Any]:
    """current-context and the named contexts, clusters and users; relative file names made absolute."""
    merged: dict[str, Any] = {"current-context": None, "contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            if len(paths) == 1:
                raise PluginError(f"kubeconfig {path} does not exist") from None
            continue  # kubectl skips missing files in a KUBECONFIG list
        except (OSError, yaml.YAMLError) as exc:
            raise PluginError(f"cannot read kubeconfig {path}: {type(exc).__name__}") from None
        if not isinstance(config, dict):
            raise PluginError(f"kubeconfig {path} is not a kubeconfig (a mapping)")
        merged["current-context"] = merged["current-context"] or config.get("current-context")
        for section, field in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for item in config.get(section) or []:
                entry = dict(item.get(field) or {})
                for key, value in entry.items():
                    if key in _FILES and value and not Path(value).is_absolute():
                        entry[key] = str(path.parent / value)
                merged[section].setdefault(item.get("name"), entry)
    return merged


def _exec_token(spec: dict[str, Any]) -> str:
    """A client-go credential plugin (users[].user.exec: EKS, GKE, AKS): run it, take status.token."""
    command = [spec.get("command", ""), *(spec.get("args") or [])]
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=EXEC_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PluginError(f"the kubeconfig's credential plugin {command[0]!r} did not run: {exc}") from None
    if done.returncode != 0:
        raise PluginError(f"the kubeconfig's credential plugin {command[0]!r} exited with {done.returncode}")
    try:
        token = json.loads(done.stdout)["status"]["token"]
    except (ValueError, KeyError, TypeError):
        raise PluginError(f"the kubeconfig's credential plugin {command[0]!r} gave no status.token") from None
    return str(token)


def login(kubeconfig: str | None, context: str | None) -> tuple[kopf.ConnectionInfo, str]:
    """The connection and the namespace the context names ("default" if none)."""
    paths = _paths(kubeconfig)
    if not paths:
        if context:
            raise PluginError(f"--context {context}: no kubeconfig (KUBECONFIG or ~/.kube/config)")
        info = kopf.login_with_service_account(settings=kopf.OperatorSettings())
        if info is None:
            raise PluginError("no kubeconfig (KUBECONFIG, --kubeconfig or ~/.kube/config) and no service account")
        return info, info.default_namespace or "default"
    config = _merged(paths)
    name = context or config["current-context"]
    if not name:
        raise PluginError("the kubeconfig sets no current context: pass --context")
    if name not in config["contexts"]:
        raise PluginError(f"context {name!r} is not in the kubeconfig")
    ctx = config["contexts"][name]
    cluster, user = config["clusters"].get(ctx.get("cluster")), config["users"].get(ctx.get("user"), {})
    if not cluster or not cluster.get("server"):
        raise PluginError(f"context {name!r} names no cluster with a server in the kubeconfig")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(user["tokenFile"]).read_text().strip()
        except OSError as exc:
            raise PluginError(f"the kubeconfig's tokenFile does not read: {exc}") from None
    if not token and user.get("exec"):
        token = _exec_token(user["exec"])
    try:
        info = _info(cluster, user, token, ctx.get("namespace"))
    except ValueError as exc:  # e.g. both a file and inline data for the CA
        raise PluginError(f"context {name!r}: {exc}") from None
    return info, ctx.get("namespace") or "default"


def _info(
    cluster: dict[str, Any], user: dict[str, Any], token: str | None, namespace: str | None
) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"),
        private_key_data=user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=token,
        proxy_url=cluster.get("proxy-url"),
        default_namespace=namespace,
    )
