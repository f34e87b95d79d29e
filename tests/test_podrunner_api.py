"""The pod runner's Kubernetes API: one API server per region behind the ``kubernetes`` Service,
projected service account tokens, RBAC from the manifests' Roles, pod objects whose labels clients
PATCH, and Service names that follow those labels. Real processes; needs root."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import needs
import pytest
from podrunner import PodRunner, PodStartError, UnsupportedPodFeature
from podrunner.image import CURL_GID, CURL_UID, resolve_image
from podrunner.manifests import (
    CURL_IMAGE,
    PATCH_LABELS,
    TOKEN_DIR,
    container,
    rbac,
    service,
    statefulset,
    token_volume,
)
from podrunner.pod import Pod

pytestmark = [needs.root, needs.debian({"curl": ["curl"], "openssl": ["openssl"]})]
NS = "lab"


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner() as r:
        yield r


def labeler_objects(names: tuple[str, ...] = (), **sts: Any) -> list[dict[str, Any]]:
    """Two pods, each with a label-updater sidecar (curl image, projected token) allowed to get and
    patch pods (``names``: only those), and Services selecting the primary and every pod."""
    labeler = container(
        "labeler",
        image=CURL_IMAGE,
        volumeMounts=[{"name": "kube-api-access", "mountPath": TOKEN_DIR, "readOnly": True}],
    )
    main = container(readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    return [
        statefulset(containers=[main, labeler], service_account="labeler", volumes=[token_volume()], **sts),
        *rbac("labeler", names=names),
        service("kv-primary", {"app": "kv", "role": "primary"}),
        service("kv", {"app": "kv"}),
        service("kv-headless", {"app": "kv"}, headless=True),
    ]


def patch(pod: Pod, target: str, labels: dict[str, str | None]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, reply) of the sidecar's curl PATCH of ``target``'s labels."""
    done = pod.exec(["sh", "-c", PATCH_LABELS, "sh", target, json.dumps({"metadata": {"labels": labels}})], "labeler")
    assert done.ok, done
    reply = pod.exec(["cat", "/tmp/reply"], "labeler").stdout
    return int(done.stdout), json.loads(reply)


def getent(pod: Pod, name: str) -> list[str]:
    out = pod.exec(["getent", "ahostsv4", name]).stdout
    return sorted({line.split()[0] for line in out.splitlines()})


def test_label_patch_from_a_sidecar_moves_the_primary_service(runner: PodRunner) -> None:
    pods = runner.start_statefulset(labeler_objects(), "kv", region="region1")
    p0, p1 = pods
    api = runner.api("region1")
    # The pod objects: template labels plus the StatefulSet controller's.
    stored = api.pod(NS, "kv-1")
    assert stored is not None
    labels = stored["metadata"]["labels"]
    assert labels["app"] == "kv" and labels["statefulset.kubernetes.io/pod-name"] == "kv-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1" and labels["controller-revision-hash"].startswith("kv-")
    assert stored["status"]["podIP"] == p1.address and stored["status"]["conditions"][0]["status"] == "True"

    # Nothing is labelled primary yet: the name does not resolve; the ClusterIP Service has both.
    assert runner.resolve(f"kv-primary.{NS}.svc.cluster.local", "region1") == []
    assert getent(p1, "kv") == sorted([p0.address, p1.address])
    assert getent(p1, "kv-0.kv-headless") == [p0.address]

    status, reply = patch(p0, "kv-0", {"role": "primary"})
    assert status == 200 and reply["metadata"]["labels"]["role"] == "primary"
    assert p0.labels["role"] == "primary"
    # Re-published before the reply was sent: the other pod's /etc/hosts has it already.
    assert getent(p1, "kv-primary") == [p0.address]
    assert runner.resolve(f"kv-primary.{NS}.svc.cluster.local", "region1") == [p0.address]

    # Switch over: kv-1 labels itself primary, kv-0's label is removed (null deletes).
    assert patch(p1, "kv-1", {"role": "primary"})[0] == 200
    assert sorted(runner.resolve(f"kv-primary.{NS}.svc.cluster.local", "region1")) == sorted([p0.address, p1.address])
    assert patch(p1, "kv-0", {"role": None})[0] == 200
    assert getent(p0, "kv-primary") == [p1.address]
    assert [r.user for r in api.requests] == ["system:serviceaccount:lab:labeler"] * 3

    # A deleted and recreated pod gets the template's labels again: kv-1 is no longer primary.
    p1.restart(wait_ready=30)
    assert "role" not in p1.labels
    assert runner.resolve(f"kv-primary.{NS}.svc.cluster.local", "region1") == []
    assert p0.errors == [] and p1.errors == []


def test_role_resource_names_limit_what_a_token_may_patch(runner: PodRunner) -> None:
    p0, _ = runner.start_statefulset(labeler_objects(names=("kv-0",)), "kv", region="region1")
    status, reply = patch(p0, "kv-1", {"role": "primary"})
    assert status == 403 and reply["reason"] == "Forbidden", reply
    assert 'cannot patch resource "pods"' in reply["message"]
    assert patch(p0, "kv-0", {"role": "primary"})[0] == 200
    assert runner.resolve(f"kv-primary.{NS}.svc.cluster.local", "region1") == [p0.address]


def test_projected_token_files_env_and_names(runner: PodRunner) -> None:
    """The files of the projected volume, the ``kubernetes`` Service's variables (enableServiceLinks
    is false: the kubelet sets them anyway) and name, and a token that dies with its pod."""
    p0, _ = runner.start_statefulset(labeler_objects(), "kv", region="region1")
    cluster = runner.cluster("region1")
    ls = p0.exec(["ls", TOKEN_DIR], "labeler").stdout.split()
    assert ls == ["ca.crt", "namespace", "token"]
    assert p0.exec(["cat", f"{TOKEN_DIR}/namespace"], "labeler").stdout == NS
    assert p0.exec(["cat", f"{TOKEN_DIR}/ca.crt"], "labeler").stdout.encode() == cluster.ca
    assert p0.exec(["cat", f"{TOKEN_DIR}/token"], "labeler").stdout == p0.token
    # Token 0600 (an fsGroup is set) plus g+r from the fsGroup; the others defaultMode 0444.
    assert p0.exec(["stat", "-L", "-c", "%a %u %g", f"{TOKEN_DIR}/token"], "labeler").stdout.split() == [
        "640",
        "0",
        "1000",
    ]
    assert p0.exec(["stat", "-L", "-c", "%a", f"{TOKEN_DIR}/ca.crt"], "labeler").stdout.strip() == "444"
    assert p0.exec(["touch", f"{TOKEN_DIR}/x"], "labeler").returncode != 0  # read-only
    # The curl image stand-in: uid 100 curl_user, its home as working directory.
    assert p0.exec(["id", "-u"], "labeler").stdout.strip() == str(CURL_UID)
    assert p0.exec(["pwd"], "labeler").stdout.strip() == "/home/curl_user"

    env = dict(line.split("=", 1) for line in p0.exec(["env"]).stdout.splitlines() if "=" in line)
    assert env["KUBERNETES_SERVICE_HOST"] == cluster.address and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == f"tcp://{cluster.address}:443"
    for name in ("kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "kubernetes.default"):
        assert getent(p0, name) == [cluster.address], name
    # The serving certificate is valid for the name as well as the address.
    named = p0.exec(
        ["curl", "-sS", "--cacert", f"{TOKEN_DIR}/ca.crt", "-o", "/dev/null", "-w", "%{http_code}",
         "https://kubernetes.default.svc/api/v1/namespaces/lab/pods/kv-0"],
        "labeler",
    )  # fmt: skip
    assert named.stdout == "401", named  # no token sent

    old = p0.token
    p0.restart(wait_ready=30)
    assert p0.token != old
    done = p0.exec(
        ["sh", "-c", f'curl -s -o /dev/null -w "%{{http_code}}" --cacert {TOKEN_DIR}/ca.crt '
         f'-H "Authorization: Bearer {old}" https://$KUBERNETES_SERVICE_HOST/api/v1/namespaces/lab/pods/kv-0'],
        "labeler",
    )  # fmt: skip
    assert done.stdout == "401"


def test_a_token_for_another_audience_is_refused(runner: PodRunner) -> None:
    objects = labeler_objects()
    volumes = objects[0]["spec"]["template"]["spec"]["volumes"]
    volumes[1] = token_volume(audience="vault")
    p0, _ = runner.start_statefulset(objects, "kv", region="region1")
    assert patch(p0, "kv-0", {"role": "primary"})[0] == 401


def test_curl_image_stand_in() -> None:
    image = resolve_image(CURL_IMAGE)
    assert image.user == (CURL_UID, CURL_GID)
    assert dict(image.env)["CURL_CA_BUNDLE"] == "/cacert.pem"
    with pytest.raises(UnsupportedPodFeature, match="only tags"):
        resolve_image("curlimages/curl:7.0.0")


def _pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[0]["spec"]["template"]["spec"]
    return spec


REFUSED: dict[str, tuple[Callable[[list[dict[str, Any]]], Any], str]] = {
    "cluster role": (
        lambda o: o[3].update(roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"}),
        "roleRef",
    ),
    "group subject": (
        lambda o: o[3]["subjects"].append({"kind": "Group", "name": "system:serviceaccounts"}),
        "subjects",
    ),
    "short token": (lambda o: _pod_spec(o)["volumes"].__setitem__(1, token_volume(expiration=60)), "expirationSeconds"),
    "downward labels": (
        lambda o: _pod_spec(o)["volumes"][1]["projected"]["sources"][2]["downwardAPI"]["items"].append(
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
        ),
        "fieldPath",
    ),
    "unknown pod management policy": (
        lambda o: o[0]["spec"].update(podManagementPolicy="Sometimes"),
        "podManagementPolicy",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_is_not_emulated_is_refused_before_anything_starts(runner: PodRunner, case: str) -> None:
    change, where = REFUSED[case]
    objects = labeler_objects()
    change(objects)
    with pytest.raises(UnsupportedPodFeature, match=where):
        runner.start_statefulset(objects, "kv")
    assert runner.pods == []


def test_a_missing_service_account_fails_the_pod_creation(runner: PodRunner) -> None:
    objects = [o for o in labeler_objects() if o["kind"] != "ServiceAccount"]
    with pytest.raises(PodStartError, match='serviceaccount "labeler" not found'):
        runner.start_statefulset(objects, "kv")
    assert runner.pods == []
