"""Which kopf peering objects the operator makes sure of, and the command its WARNING hands to a person."""

from __future__ import annotations

import json
import shlex

from collection_operator.k8s.peering import PeeringKeeper


def keeper(*namespaces: str) -> PeeringKeeper:
    return PeeringKeeper(None, "qco", namespaces)  # type: ignore[arg-type]  # no call to the API is made


def test_the_cluster_wide_operator_keeps_one_clusterkopfpeering():
    cluster_wide = keeper()
    assert [(o.kind, o.namespace, o.name, o.crd) for o in cluster_wide.objects] == [
        ("ClusterKopfPeering", None, "qco", "clusterkopfpeerings.kopf.dev")
    ]
    assert cluster_wide.patterns == ()


def test_a_namespaced_operator_keeps_a_kopfpeering_per_named_namespace_and_none_for_a_pattern():
    namespaced = keeper("search", "team-*", "ml", "!x")
    assert [(o.kind, o.namespace) for o in namespaced.objects] == [("KopfPeering", "search"), ("KopfPeering", "ml")]
    assert namespaced.patterns == ("team-*", "!x")


def test_the_create_command_is_one_shell_line_with_the_object():
    for obj, scope in ((keeper().objects[0], []), (keeper("ml").objects[0], ["-n", "ml"])):
        words = shlex.split(obj.create_command)
        assert words[0] == "echo" and words[2:] == ["|", "kubectl", "create", *scope, "-f", "-"]
        assert json.loads(words[1]) == {"apiVersion": "kopf.dev/v1", "kind": obj.kind, "metadata": {"name": "qco"}}
