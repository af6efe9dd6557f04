"""Issue 22, approval separated from authorship, on the real API server with the base's admission policy and
roles (applied from the kustomization by the control_plane fixture, for every test): ServiceAccounts bound to the
built-in view, edit and admin roles, acting with their own TokenRequest tokens. An edit subject writes
VectorCollections but may not set or change the approve-plan annotation; whoever holds the verb approve (the
approver role, or admin) may; removing the annotation or editing anything else stays an editor's right."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml

from tests.builders import collection_spec
from tests.fixtures.controlplane import Kubectl, KubectlError
from tests.fixtures.operator import manifest, wait_for
from tests.integration.test_install_path import kubeconfig_for

pytestmark = pytest.mark.integration
APPROVE = "qdrant.collection-operator.dev/approve-plan"
DENIED = (
    "denied request: approving a plan needs the verb approve on vectorcollections: ask a namespace approver; "
    "see docs/security.md"
)


@pytest.fixture
def subject(control_plane, unwatched_namespace, tmp_path) -> Callable[..., Kubectl]:
    """kubectl as a new ServiceAccount of the test namespace bound there to `roles`, with a token from the
    TokenRequest API (`kubectl create token`)."""

    def make(name: str, *roles: str) -> Kubectl:
        admin, namespace = control_plane.admin, unwatched_namespace
        admin("create", "serviceaccount", name, "-n", namespace)
        for role in roles:
            binding = f"{name}-{role.rsplit(':', 1)[-1]}"
            admin(
                "create",
                "rolebinding",
                binding,
                f"--clusterrole={role}",
                f"--serviceaccount={namespace}:{name}",
                "-n",
                namespace,
            )
        token = admin("create", "token", name, "-n", namespace, "--duration=1h").strip()
        kubectl = Kubectl(kubeconfig_for(control_plane.admin_kubeconfig, tmp_path / f"{name}.kubeconfig", token=token))
        kubectl("config", "set-context", "--current", f"--namespace={namespace}")
        return kubectl

    return make


def annotations(kubectl: Kubectl, name: str) -> dict[str, str]:
    return kubectl.json("get", "vectorcollection", name)["metadata"].get("annotations", {})


def can_i(kubectl: Kubectl, verb: str) -> bool:
    return kubectl("auth", "can-i", verb, "vectorcollections", check=False).strip() == "yes"


def test_an_editor_authors_plans_and_only_an_approver_approves_them(subject):
    author = subject("author", "edit")
    approver = subject("approver", "edit", "qdrant-collection-operator:approver")
    # The built-in edit role carries the editor rules once kube-controller-manager has aggregated them.
    wait_for(lambda: can_i(author, "create"), 30, "edit to aggregate the editor role (clusterrole aggregation)")
    assert not can_i(author, "approve") and can_i(approver, "approve")

    doc = manifest("VectorCollection", "docs", collection_spec(collectionName="docs"))
    approved = manifest("VectorCollection", "approved", collection_spec(), annotations={APPROVE: "4b1e0c9a7d2f"})
    # The API server loads a new policy within seconds; from then on the author's approving create is refused.
    wait_for(
        lambda: DENIED in author("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(approved), check=False),
        30,
        "the approval policy in force",
    )
    author("create", "-f", "-", stdin=yaml.safe_dump(doc))

    # Setting the annotation: the author is refused with the message, the approver is not.
    with pytest.raises(KubectlError) as denied:
        author("annotate", "vectorcollection", "docs", f"{APPROVE}=4b1e0c9a7d2f")
    assert "(Forbidden)" in denied.value.stderr and DENIED in denied.value.stderr
    assert APPROVE not in annotations(author, "docs")
    approver("annotate", "vectorcollection", "docs", f"{APPROVE}=4b1e0c9a7d2f")

    # Changing it: refused for the author, whichever way the write comes.
    change = {APPROVE: "0000aaaa1111"}
    for write in (
        ["annotate", "vectorcollection", "docs", f"{APPROVE}=0000aaaa1111", "--overwrite"],
        ["patch", "vectorcollection", "docs", "--type=merge", "-p", json.dumps({"metadata": {"annotations": change}})],
    ):
        assert DENIED in author(*write, check=False)
    assert annotations(author, "docs")[APPROVE] == "4b1e0c9a7d2f"

    # Left as it is, the author edits the spec, labels and other annotations; and may withdraw the approval.
    author("patch", "vectorcollection", "docs", "--type=merge", "-p", '{"spec": {"deletionPolicy": "Delete"}}')
    author("label", "vectorcollection", "docs", "team=search")
    author("annotate", "vectorcollection", "docs", "note=reviewed")
    assert annotations(author, "docs")[APPROVE] == "4b1e0c9a7d2f"
    author("annotate", "vectorcollection", "docs", f"{APPROVE}-")
    assert APPROVE not in annotations(author, "docs")

    # A create that approves: the approver may.
    assert DENIED in author("create", "-f", "-", stdin=yaml.safe_dump(approved), check=False)
    approver("create", "-f", "-", stdin=yaml.safe_dump(approved))
    assert annotations(approver, "approved")[APPROVE] == "4b1e0c9a7d2f"


def test_view_reads_and_a_namespace_admin_approves_and_appoints_approvers(subject, unwatched_namespace):
    viewer = subject("viewer", "view")
    owner = subject("owner", "admin")
    author = subject("author", "edit")
    wait_for(lambda: can_i(viewer, "list"), 30, "view to aggregate the viewer role (clusterrole aggregation)")
    owner("create", "-f", "-", stdin=yaml.safe_dump(manifest("VectorCollection", "docs", collection_spec())))

    assert [item["metadata"]["name"] for item in viewer.json("get", "vectorcollections")["items"]] == ["docs"]
    for write in (
        ["annotate", "vectorcollection", "docs", "note=x"],
        ["delete", "vectorcollection", "docs"],
        ["create", "-f", "-"],
    ):
        stdin = yaml.safe_dump(manifest("VectorCollection", "other", collection_spec()))
        assert "(Forbidden)" in viewer(*write, stdin=stdin, check=False), write
    assert not can_i(viewer, "approve")

    # admin holds approve (the approver role is aggregated into it), so it may approve, and may bind the approver
    # role to someone (RBAC lets a subject grant only rights it holds) with the command docs/security.md gives.
    wait_for(lambda: can_i(owner, "approve"), 30, "admin to aggregate the approver role")
    owner("annotate", "vectorcollection", "docs", f"{APPROVE}=4b1e0c9a7d2f")
    assert DENIED in author(
        "annotate", "vectorcollection", "docs", f"{APPROVE}=0000aaaa1111", "--overwrite", check=False
    )
    approver_role = "--clusterrole=qdrant-collection-operator:approver"
    owner("create", "rolebinding", "author-approves", approver_role, f"--serviceaccount={unwatched_namespace}:author")
    wait_for(lambda: can_i(author, "approve"), 30, "the author's new binding")
    author("annotate", "vectorcollection", "docs", f"{APPROVE}=0000aaaa1111", "--overwrite")
    assert annotations(author, "docs")[APPROVE] == "0000aaaa1111"

    # The check names the object: a Role narrowed by resource name approves that VectorCollection only.
    reviewer = subject("reviewer", "edit")
    owner("create", "-f", "-", stdin=yaml.safe_dump(manifest("VectorCollection", "other", collection_spec())))
    vectorcollections = "--resource=vectorcollections.qdrant.collection-operator.dev"
    owner("create", "role", "approve-docs", "--verb=approve", vectorcollections, "--resource-name=docs")
    owner(
        "create",
        "rolebinding",
        "approve-docs",
        "--role=approve-docs",
        f"--serviceaccount={unwatched_namespace}:reviewer",
    )
    wait_for(
        lambda: reviewer("auth", "can-i", "approve", "vectorcollections/docs", check=False).strip() == "yes",
        30,
        "the reviewer's binding",
    )
    reviewer("annotate", "vectorcollection", "docs", f"{APPROVE}=4b1e0c9a7d2f", "--overwrite")
    assert DENIED in reviewer("annotate", "vectorcollection", "other", f"{APPROVE}=4b1e0c9a7d2f", check=False)
