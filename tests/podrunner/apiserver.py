"""The part of the Kubernetes API a pod-label updater uses, in-process: GET and PATCH of one Pod.

    with ApiServer(tls=pki.make_server_cert(...)) as api:
        api.put_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "v-0", "namespace": "ns"}})
        api.add_token("t0k3n", ServiceAccount("ns", "labeler", (Rule(("get", "patch")),)))
        ... a client sends GET/PATCH to api.url with "Authorization: Bearer t0k3n" ...
        api.pod("ns", "v-0")["metadata"]["labels"], api.requests

Written from kube-apiserver's behaviour (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go,
the generic registry's Update, RBAC's authorizer), checked in the order it checks: authentication
(401), authorization (403), the object (404), the patch's media type (415) and body (400, or 422 when
a JSON patch operation cannot be applied), the resourceVersion precondition (409), validation (422).
Errors are ``Status`` objects with the reasons and messages the real server sends, so a client's
error handling is tested against what it will meet.

Where it differs, on purpose:
- A patch may change only ``metadata.labels`` and ``metadata.annotations`` (and name the
  resourceVersion it expects). Anything else is refused with 422: stricter than Kubernetes, which
  lets a patch change e.g. a container's image or activeDeadlineSeconds (and silently drops
  ``status`` changes sent to the main resource). A label updater touching ``spec`` is a bug.
- A strategic merge patch is applied as a JSON merge patch. For the maps of strings it may change
  (labels, annotations) the two are the same; its ``$patch``/``$retainKeys``... directives are
  refused with 400 instead of being interpreted.
- Server-side apply (``application/apply-patch+yaml``) is not emulated: 415, like an unknown type.
- One namespaced Role per ServiceAccount, bound in the ServiceAccount's own namespace; no
  ClusterRoles, groups, impersonation, list/watch, dry-run, fieldManager or managedFields.

The pod runner (cluster.py) runs one per region on the address of the ``kubernetes`` Service, puts
every pod it starts here (``put_pod``/``delete_pod``/``set_status``), registers each pod's projected
token (``add_token``/``remove_token``) and follows label changes through ``on_change``.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from apiserver_names import label_value, qualified_name

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# The media types kube-apiserver names when it refuses one (apply-patch+yaml is not emulated here).
ACCEPTED_PATCH_TYPES = (
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
    "application/strategic-merge-patch+json"
)
POD_PATH = re.compile(r"/api/v1/namespaces/(?P<namespace>[^/]+)/pods/(?P<name>[^/]+)")
# What a patch may change; metadata.resourceVersion is the precondition, not a change.
MUTABLE_METADATA = ("labels", "annotations")
TOTAL_ANNOTATIONS_MAX = 256 * 1024
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@dataclass(frozen=True)
class Rule:
    """One rule of a namespaced Role: ``resourceNames`` empty means every pod, as in RBAC."""

    verbs: tuple[str, ...]
    resources: tuple[str, ...] = ("pods",)
    resource_names: tuple[str, ...] = ()

    def allows(self, verb: str, resource: str, name: str) -> bool:
        return (
            (verb in self.verbs or "*" in self.verbs)
            and (resource in self.resources or "*" in self.resources)
            and (not self.resource_names or name in self.resource_names)
        )


@dataclass(frozen=True)
class ServiceAccount:
    """A token's identity and what a Role bound to it in its own namespace grants."""

    namespace: str
    name: str
    rules: tuple[Rule, ...] = ()

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass(frozen=True)
class Request:
    """One request as the server saw it: tests assert what a client did (and did not do)."""

    method: str
    path: str
    content_type: str | None
    status: int
    user: str | None


class ApiError(Exception):
    """A request ending in a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.user: str | None = None  # who was authenticated, for the request log

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def _invalid(name: str, field: str, detail: str) -> ApiError:
    message = f'Pod "{name}" is invalid: {field}: {detail}'
    cause = {"reason": "FieldValueInvalid", "message": detail, "field": field}
    return ApiError(422, "Invalid", message, {"name": name, "kind": "Pod", "causes": [cause]})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: an object patch merges key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    """RFC 6901: "" is the whole document; "~1" is "/" and "~0" is "~", decoded in that order."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} does not start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str], path: str) -> Any:
    node = document
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"path {path!r}: {part!r} does not exist")
    return node


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 add, remove, replace and test (move and copy are not emulated); ValueError when an
    operation cannot be applied, as the real server's 422."""
    if not isinstance(operations, list):
        raise TypeError("a JSON patch is a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise TypeError(f"not a JSON patch operation: {operation!r}")
        op, path = operation.get("op"), operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise TypeError(f"{op} {path!r} has no value")
        parts = _pointer(path)
        if not parts:
            raise ValueError("operations on the whole document are not emulated")
        parent, key = _parent(result, parts, path), parts[-1]
        if op == "test":
            current = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or key not in parent or current != operation["value"]:
                raise ValueError(f"test {path!r}: the value differs")
        elif not isinstance(parent, dict):
            raise ValueError(f"path {path!r}: only object members are emulated, not array elements")
        elif op == "add":
            parent[key] = copy.deepcopy(operation["value"])
        elif op in ("replace", "remove"):
            if key not in parent:
                raise ValueError(f"{op} {path!r}: the path does not exist")
            if op == "replace":
                parent[key] = copy.deepcopy(operation["value"])
            else:
                del parent[key]
        else:
            raise TypeError(f"op {op!r} is not emulated (only add, remove, replace, test)")
    return result


def _directives(patch: Any) -> bool:
    """Whether a strategic merge patch carries ``$`` directives anywhere."""
    if isinstance(patch, dict):
        return any(str(key).startswith("$") or _directives(value) for key, value in patch.items())
    if isinstance(patch, list):
        return any(_directives(item) for item in patch)
    return False


class ApiServer:
    """GET and PATCH of Pods held in memory, over HTTPS when given ``tls=(key, certificate)``.

    ``put_pod`` and ``pod`` are the tests' side door (no authentication, no log entry);
    ``requests`` is the log of what clients sent, in order."""

    def __init__(self, tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, str], None]] = []
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._tokens: dict[str, ServiceAccount] = {}
        self._requests: list[Request] = []
        self._version = 0
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile=str(tls[1]), keyfile=str(tls[0]))
        self.scheme = "http" if context is None else "https"
        self._server = _Server((host, port), _handler_class(self), context)
        # shutdown() waits for the serving loop's next poll: a short one keeps each test's teardown short.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="apiserver", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def add_token(self, token: str, account: ServiceAccount) -> None:
        with self._lock:
            self._tokens[token] = account

    def remove_token(self, token: str) -> None:
        """A bound token dies with its pod: later requests with it get 401."""
        with self._lock:
            self._tokens.pop(token, None)

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(namespace, name)`` after a client's PATCH changed a pod (from the request's
        thread, after the reply's state is stored): how the runner's endpoints follow labels."""
        with self._lock:
            self._listeners.append(listener)

    def mark_deleted(self, namespace: str, name: str, grace_seconds: int) -> None:
        """A graceful DELETE as kube-apiserver records it before the kubelet has stopped the pod
        (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go BeforeDelete):
        ``metadata.deletionTimestamp`` = now + the grace period, ``deletionGracePeriodSeconds``, a
        new resourceVersion. The object, its labels and their PATCHes stay until delete_pod()."""
        deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace_seconds)
        with self._lock:
            pod = self._pods.get((namespace, name))
            if pod is not None and "deletionTimestamp" not in pod["metadata"]:
                pod["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
                pod["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
                pod["metadata"]["resourceVersion"] = self._next_version()

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace a pod's status as the kubelet's status manager does (a new resourceVersion)."""
        with self._lock:
            pod = self._pods.get((namespace, name))
            if pod is not None and pod.get("status") != status:
                pod["status"] = copy.deepcopy(status)
                pod["metadata"]["resourceVersion"] = self._next_version()

    def put_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Store (or replace) a pod as a controller would, with a new resourceVersion; returns it."""
        pod = copy.deepcopy(pod)
        meta = pod.setdefault("metadata", {})
        with self._lock:
            meta["resourceVersion"] = self._next_version()
            self._pods[(meta["namespace"], meta["name"])] = pod
            return copy.deepcopy(pod)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            pod = self._pods.get((namespace, name))
            return copy.deepcopy(pod)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _log(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str | None, Any]:
        """(the user, the response body) of one request; raises ApiError for a Status."""
        header = headers.get("authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None
        with self._lock:
            account = self._tokens.get(token) if token else None
        if account is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        try:
            return account.user, self._serve(account, method, path, headers, body)
        except ApiError as exc:
            exc.user = account.user
            raise

    def _serve(self, account: ServiceAccount, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        match = POD_PATH.fullmatch(path.split("?", 1)[0])
        if match is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        namespace, name = match["namespace"], match["name"]
        verb = {"GET": "get", "PATCH": "patch"}.get(method)
        if verb is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not emulated (only GET and PATCH)", {})
        self._authorize(account, verb, namespace, name)
        with self._lock:
            current = self._pods.get((namespace, name))
            if current is None:
                raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
            if verb == "get":
                return copy.deepcopy(current)
            patched = _apply(current, headers.get("content-type", ""), body)
            _check(current, patched, name)
            changed = patched != current
            if changed:
                patched["metadata"]["resourceVersion"] = self._next_version()
                self._pods[(namespace, name)] = patched
            # A patch leaving resourceVersion out (or null) is unconditional; the stored one stays.
            patched["metadata"]["resourceVersion"] = self._pods[(namespace, name)]["metadata"]["resourceVersion"]
            listeners = list(self._listeners) if changed else []
            result = copy.deepcopy(patched)
        for listener in listeners:  # before the reply: a client that has its answer sees the effect
            listener(namespace, name)
        return result

    @staticmethod
    def _authorize(account: ServiceAccount, verb: str, namespace: str, name: str) -> None:
        if namespace == account.namespace and any(rule.allows(verb, "pods", name) for rule in account.rules):
            return
        message = (
            f'pods "{name}" is forbidden: User "{account.user}" cannot {verb} resource "pods" '
            f'in API group "" in the namespace "{namespace}"'
        )
        raise ApiError(403, "Forbidden", message, {"name": name, "kind": "pods"})


def _apply(current: dict[str, Any], content_type: str, body: bytes) -> dict[str, Any]:
    """The pod with the patch applied, before the precondition and validation."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH):
        message = (
            f"the body of the request was in an unknown format - accepted media types include: {ACCEPTED_PATCH_TYPES}"
        )
        raise ApiError(415, "UnsupportedMediaType", message, {})
    try:
        patch = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"error decoding patch: {exc}") from exc
    if media_type == JSON_PATCH:
        try:
            patched = json_patch(current, patch)
        except TypeError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        except ValueError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
    else:
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        if media_type == STRATEGIC_MERGE_PATCH and _directives(patch):
            raise ApiError(400, "BadRequest", "strategic merge patch directives ($...) are not emulated")
        patched = merge_patch(current, patch)
    if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
        raise ApiError(400, "BadRequest", "the patched object has no metadata")
    return patched


def _check(current: dict[str, Any], patched: dict[str, Any], name: str) -> None:
    """The resourceVersion precondition (409), then what may change and label validity (400, 422)."""
    wanted = patched["metadata"].get("resourceVersion")
    if wanted not in (None, "") and wanted != current["metadata"]["resourceVersion"]:
        message = (
            f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        raise ApiError(409, "Conflict", message, {"name": name, "kind": "pods"})
    # spec among them: stricter than Kubernetes, which lets a patch change e.g. a container's image.
    for key in sorted(set(patched) | set(current)):
        if key not in ("metadata", "status") and patched.get(key) != current.get(key):
            raise _invalid(name, key, "Forbidden: may not be changed (this emulation allows only labels, annotations)")
    before, after = current["metadata"], patched["metadata"]
    for key in sorted(set(before) | set(after)):
        if key not in (*MUTABLE_METADATA, "resourceVersion") and before.get(key) != after.get(key):
            raise _invalid(name, f"metadata.{key}", "Forbidden: may not be changed by this emulation")
    if patched.get("status") != current.get("status"):
        raise _invalid(name, "status", "Forbidden: status is changed through the status subresource")
    _check_strings(patched["metadata"], name)


def _check_strings(meta: dict[str, Any], name: str) -> None:
    for field in MUTABLE_METADATA:
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ApiError(400, "BadRequest", f"metadata.{field} must map strings to strings")
        for key, value in values.items():
            if not qualified_name(key):
                raise _invalid(name, f"metadata.{field}", f'Invalid value: "{key}": not a qualified name')
            if field == "labels" and not label_value(value):
                detail = "must be no more than 63 characters" if len(value) > 63 else LABEL_VALUE_MESSAGE
                raise _invalid(name, "metadata.labels", f'Invalid value: "{value}": {detail}')
        if field == "annotations" and sum(len(k) + len(v) for k, v in values.items()) > TOTAL_ANNOTATIONS_MAX:
            raise _invalid(name, "metadata.annotations", f"Too long: must have at most {TOTAL_ANNOTATIONS_MAX} bytes")


class _Server(ThreadingHTTPServer):
    """TLS handshakes happen in each connection's thread: a stalled or refused client (wrong CA)
    holds up no other, and is dropped without a traceback."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: Callable[..., BaseHTTPRequestHandler],
        context: ssl.SSLContext | None,
    ):
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def _handler_class(api: ApiServer) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            user: str | None = None
            try:
                user, response = api.handle(self.command, self.path, headers, body)
                code = 200
            except ApiError as exc:
                code, response, user = exc.code, exc.status(), exc.user
            # Logged before the reply is sent: a client that has its answer finds its request in the log.
            api._log(Request(self.command, self.path, headers.get("content-type"), code, user))
            payload = json.dumps(response).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is ``ApiServer.requests``."""

    return Handler
