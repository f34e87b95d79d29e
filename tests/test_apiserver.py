"""tests/podrunner/apiserver.py answers as kube-apiserver does the requests a pod-label updater sends.

The client is curl (what the updater sidecar will run) over HTTPS with a throwaway CA, and urllib
where a test is about the server's bookkeeping rather than the wire. No root needed: the server is
a thread of this process on 127.0.0.1.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import needs
import pytest
from pki import make_server_pki
from podrunner.apiserver import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiServer,
    Request,
    Rule,
    ServiceAccount,
    json_patch,
)

NS = "cache"
POD = "sessions-0"
TOKEN, READER_TOKEN, ONE_POD_TOKEN, OTHER_NS_TOKEN = "labeler-token", "reader-token", "one-pod-token", "other-token"
LABELER = ServiceAccount(NS, "labeler", (Rule(("get", "patch")),))
READER = ServiceAccount(NS, "reader", (Rule(("get",)),))
ONE_POD = ServiceAccount(NS, "one-pod", (Rule(("get", "patch"), resource_names=(POD,)),))
# Allowed everything, but by a Role in its own namespace: nothing in NS.
OTHER_NS = ServiceAccount("elsewhere", "labeler", (Rule(("*",), ("*",)),))
PATH = f"/api/v1/namespaces/{NS}/pods/{POD}"
pytestmark = needs.debian({"curl": ["curl"], "openssl": ["openssl"]})


def pod(name: str = POD, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {"app.kubernetes.io/name": "valkey"}},
        "spec": {"containers": [{"name": "valkey", "image": "valkey/valkey:8.1"}]},
        "status": {"phase": "Running", "podIP": "10.213.0.2"},
    }


@dataclass
class Api:
    server: ApiServer
    ca: Path

    def curl(
        self,
        method: str,
        path: str = PATH,
        body: Any = None,
        content_type: str | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of one request sent the way a sidecar would send it."""
        command = ["curl", "-sS", "--cacert", str(self.ca), "-X", method, "-o", "-", "-w", "\n%{http_code}"]
        if token is not None:
            command += ["-H", f"Authorization: Bearer {token}"]
        if content_type is not None:
            command += ["-H", f"Content-Type: {content_type}"]
        if body is not None:
            command += ["--data-binary", body if isinstance(body, str) else json.dumps(body)]
        done = subprocess.run(
            [*command, self.server.url + path], capture_output=True, text=True, check=True, timeout=10
        )
        payload, _, code = done.stdout.rpartition("\n")
        return int(code), json.loads(payload)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA certificate, server key, server certificate): made once, openssl takes a while."""
    return make_server_pki(tmp_path_factory.mktemp("apiserver-pki"), "apiserver-ca")


@pytest.fixture
def api(tls: tuple[Path, Path, Path]) -> Iterator[Api]:
    ca, key, cert = tls
    with ApiServer(tls=(key, cert)) as server:
        for token, account in [
            (TOKEN, LABELER),
            (READER_TOKEN, READER),
            (ONE_POD_TOKEN, ONE_POD),
            (OTHER_NS_TOKEN, OTHER_NS),
        ]:
            server.add_token(token, account)
        server.put_pod(pod())
        server.put_pod(pod("sessions-1"))
        yield Api(server, ca)


def labels(api: Api, name: str = POD) -> dict[str, str]:
    stored = api.server.pod(NS, name)
    assert stored is not None
    labels: dict[str, str] = stored["metadata"]["labels"]
    return labels


def assert_status(body: dict[str, Any], code: int, reason: str) -> None:
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason), body


def test_get_returns_the_pod(api: Api) -> None:
    code, body = api.curl("GET")
    assert code == 200
    assert body == api.server.pod(NS, POD)
    assert (body["kind"], body["metadata"]["name"], body["metadata"]["resourceVersion"]) == ("Pod", POD, "1")


def test_get_of_a_missing_pod_is_a_not_found_status(api: Api) -> None:
    code, body = api.curl("GET", f"/api/v1/namespaces/{NS}/pods/sessions-9")
    assert code == 404
    assert_status(body, 404, "NotFound")
    assert body["message"] == 'pods "sessions-9" not found'
    assert body["details"] == {"name": "sessions-9", "kind": "pods"}


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_missing_or_unknown_token_is_unauthorized(api: Api, token: str | None) -> None:
    code, body = api.curl("GET", token=token)
    assert code == 401
    assert_status(body, 401, "Unauthorized")
    assert api.server.requests[-1] == Request("GET", PATH, None, 401, None)


@pytest.mark.parametrize("content_type", [MERGE_PATCH, STRATEGIC_MERGE_PATCH])
def test_a_merge_patch_sets_and_deletes_labels(api: Api, content_type: str) -> None:
    api.server.put_pod(pod(labels={"app.kubernetes.io/name": "valkey", "valkey.io/role": "replica"}))
    before = api.server.pod(NS, POD)
    assert before is not None
    patch = {"metadata": {"labels": {"valkey.io/role": None, "valkey.io/shard": "a"}}}
    code, body = api.curl("PATCH", body=patch, content_type=content_type)
    assert code == 200
    assert body["metadata"]["labels"] == {"app.kubernetes.io/name": "valkey", "valkey.io/shard": "a"}
    assert body == api.server.pod(NS, POD)
    assert int(body["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # Nothing else moved.
    assert {k: v for k, v in body.items() if k != "metadata"} == {k: v for k, v in before.items() if k != "metadata"}


def test_a_json_patch_adds_replaces_and_removes_escaped_keys(api: Api) -> None:
    role = "/metadata/labels/valkey.io~1role"
    code, body = api.curl("PATCH", body=[{"op": "add", "path": role, "value": "replica"}], content_type=JSON_PATCH)
    assert (code, body["metadata"]["labels"]["valkey.io/role"]) == (200, "replica")
    code, _ = api.curl("PATCH", body=[{"op": "replace", "path": role, "value": "primary"}], content_type=JSON_PATCH)
    assert (code, labels(api)["valkey.io/role"]) == (200, "primary")
    code, body = api.curl("PATCH", body=[{"op": "remove", "path": role}], content_type=JSON_PATCH)
    assert code == 200
    assert "valkey.io/role" not in body["metadata"]["labels"]
    assert body["metadata"]["resourceVersion"] == "5"  # 2 pods put, then three changes


def test_json_pointers_unescape_tilde_after_slash() -> None:
    """RFC 6901: "~01" is "~1", not "/". No label key may hold a "~", so this is checked off the wire."""
    document = {"m": {"a/b": 1, "a~1b": 2, "a~b": 3}}
    patched = json_patch(
        document, [{"op": "remove", "path": "/m/a~01b"}, {"op": "replace", "path": "/m/a~0b", "value": 4}]
    )
    assert patched == {"m": {"a/b": 1, "a~b": 4}}
    assert document["m"]["a~1b"] == 2  # the input is left alone


def test_label_keys_are_validated(api: Api) -> None:
    code, body = api.curl(
        "PATCH", body=[{"op": "add", "path": "/metadata/labels/a~0b", "value": "x"}], content_type=JSON_PATCH
    )
    assert code == 422
    assert_status(body, 422, "Invalid")
    assert "a~b" not in labels(api)


def test_a_json_patch_removing_a_missing_label_is_unprocessable(api: Api) -> None:
    code, body = api.curl("PATCH", body=[{"op": "remove", "path": "/metadata/labels/nope"}], content_type=JSON_PATCH)
    assert code == 422
    assert_status(body, 422, "Invalid")
    assert api.server.pod(NS, POD) == pod() | {"metadata": pod()["metadata"] | {"resourceVersion": "1"}}


@pytest.mark.parametrize("content_type", ["application/json", "application/apply-patch+yaml", None])
def test_other_patch_media_types_are_unsupported(api: Api, content_type: str | None) -> None:
    code, body = api.curl("PATCH", body={"metadata": {"labels": {"a": "b"}}}, content_type=content_type)
    assert code == 415
    assert_status(body, 415, "UnsupportedMediaType")
    assert "valkey.io/role" not in labels(api) and "a" not in labels(api)


def test_a_patch_to_spec_is_refused(api: Api) -> None:
    """Stricter than Kubernetes, which allows an image change: the label updater must not make one."""
    patch = {"spec": {"containers": [{"name": "valkey", "image": "valkey/valkey:9"}]}}
    code, body = api.curl("PATCH", body=patch, content_type=STRATEGIC_MERGE_PATCH)
    assert code == 422
    assert_status(body, 422, "Invalid")
    assert body["message"].startswith(f'Pod "{POD}" is invalid: spec: Forbidden: ')
    stored = api.server.pod(NS, POD)
    assert stored is not None and stored["spec"] == pod()["spec"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [("", True), ("a" * 63, True), ("My_value.1-x", True), ("a" * 64, False), ("-primary", False), ("a b", False)],
)
def test_label_values_are_validated_as_kubernetes_does(api: Api, value: str, valid: bool) -> None:
    code, body = api.curl("PATCH", body={"metadata": {"labels": {"valkey.io/role": value}}}, content_type=MERGE_PATCH)
    if valid:
        assert (code, labels(api)["valkey.io/role"]) == (200, value)
    else:
        assert code == 422
        assert_status(body, 422, "Invalid")
        assert body["message"].startswith(f'Pod "{POD}" is invalid: metadata.labels: Invalid value: "{value}": ')
        assert "valkey.io/role" not in labels(api)


def test_a_stale_resource_version_is_a_conflict(api: Api) -> None:
    current = api.server.pod(NS, POD)
    assert current is not None
    version = current["metadata"]["resourceVersion"]
    patch = {"metadata": {"resourceVersion": version, "labels": {"valkey.io/role": "primary"}}}
    code, body = api.curl("PATCH", body=patch, content_type=MERGE_PATCH)
    assert code == 200 and body["metadata"]["resourceVersion"] != version
    # The same precondition again: the pod has moved on since.
    patch = {"metadata": {"resourceVersion": version, "labels": {"valkey.io/role": "replica"}}}
    code, body = api.curl("PATCH", body=patch, content_type=MERGE_PATCH)
    assert code == 409
    assert_status(body, 409, "Conflict")
    assert body["message"] == (
        f'Operation cannot be fulfilled on pods "{POD}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert labels(api)["valkey.io/role"] == "primary"


def test_a_no_op_patch_keeps_the_resource_version(api: Api) -> None:
    code, body = api.curl(
        "PATCH", body={"metadata": {"labels": {"app.kubernetes.io/name": "valkey"}}}, content_type=MERGE_PATCH
    )
    assert (code, body["metadata"]["resourceVersion"]) == (200, "1")


@pytest.mark.parametrize(
    ("token", "user", "name", "verb"),
    [
        (READER_TOKEN, "system:serviceaccount:cache:reader", POD, "patch"),
        (ONE_POD_TOKEN, "system:serviceaccount:cache:one-pod", "sessions-1", "patch"),
        (ONE_POD_TOKEN, "system:serviceaccount:cache:one-pod", "sessions-1", "get"),
        (OTHER_NS_TOKEN, "system:serviceaccount:elsewhere:labeler", POD, "get"),
    ],
)
def test_rbac_forbids_what_the_role_does_not_grant(api: Api, token: str, user: str, name: str, verb: str) -> None:
    path = f"/api/v1/namespaces/{NS}/pods/{name}"
    body = {"metadata": {"labels": {"valkey.io/role": "primary"}}} if verb == "patch" else None
    code, status = api.curl(verb.upper(), path, body, MERGE_PATCH if body else None, token=token)
    assert code == 403
    assert_status(status, 403, "Forbidden")
    assert status["message"] == (
        f'pods "{name}" is forbidden: User "{user}" cannot {verb} resource "pods" '
        f'in API group "" in the namespace "{NS}"'
    )
    assert "valkey.io/role" not in labels(api, name)
    assert api.server.requests[-1].user == user


def test_rbac_allows_what_the_role_grants(api: Api) -> None:
    patch = {"metadata": {"labels": {"valkey.io/role": "primary"}}}
    assert api.curl("GET", token=READER_TOKEN)[0] == 200
    assert api.curl("PATCH", body=patch, content_type=MERGE_PATCH, token=ONE_POD_TOKEN)[0] == 200
    assert api.curl("PATCH", f"/api/v1/namespaces/{NS}/pods/sessions-1", patch, MERGE_PATCH)[0] == 200
    assert labels(api)["valkey.io/role"] == labels(api, "sessions-1")["valkey.io/role"] == "primary"
    # "*" verbs and resources, in the Role's own namespace.
    api.server.put_pod(pod() | {"metadata": pod()["metadata"] | {"namespace": "elsewhere"}})
    assert api.curl("GET", f"/api/v1/namespaces/elsewhere/pods/{POD}", token=OTHER_NS_TOKEN)[0] == 200


def test_forbidden_comes_before_not_found(api: Api) -> None:
    """As in Kubernetes: a client without access learns nothing about which pods exist."""
    code, _ = api.curl("GET", f"/api/v1/namespaces/{NS}/pods/sessions-9", token=ONE_POD_TOKEN)
    assert code == 403


def test_the_request_log_says_what_a_client_did(api: Api) -> None:
    context = ssl.create_default_context(cafile=str(api.ca))
    request = urllib.request.Request(
        api.server.url + PATH,
        data=json.dumps({"metadata": {"labels": {"valkey.io/role": "primary"}}}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": MERGE_PATCH},
        method="PATCH",
    )
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(api.server.url + PATH), context=context)
    assert refused.value.code == 401
    assert api.server.requests == [
        Request("PATCH", PATH, MERGE_PATCH, 200, LABELER.user),
        Request("GET", PATH, None, 401, None),
    ]


def test_plain_http_without_tls() -> None:
    with ApiServer() as server:
        server.add_token(TOKEN, LABELER)
        server.put_pod(pod())
        assert server.url.startswith("http://")
        request = urllib.request.Request(server.url + PATH, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request) as response:
            assert json.load(response)["metadata"]["name"] == POD


def test_annotations_may_change_but_no_other_metadata(api: Api) -> None:
    patch = {"metadata": {"annotations": {"valkey.io/role-since": "2026-01-01T00:00:00Z"}}}
    assert api.curl("PATCH", body=patch, content_type=MERGE_PATCH)[0] == 200
    code, body = api.curl("PATCH", body={"metadata": {"finalizers": ["x"]}}, content_type=MERGE_PATCH)
    assert code == 422
    assert_status(body, 422, "Invalid")
    stored = api.server.pod(NS, POD)
    assert stored is not None and "finalizers" not in stored["metadata"]


def test_strategic_merge_directives_are_refused_not_guessed(api: Api) -> None:
    """Looser emulation would apply them as plain keys; a label updater has no use for them."""
    patch = {"metadata": {"labels": {"$patch": "replace", "valkey.io/role": "primary"}}}
    code, body = api.curl("PATCH", body=patch, content_type=STRATEGIC_MERGE_PATCH)
    assert code == 400
    assert_status(body, 400, "BadRequest")
    assert "valkey.io/role" not in labels(api)
