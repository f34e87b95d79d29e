"""The kubelet's httpGet probe (pkg/probe/http): a GET from the node to the pod IP, no keep-alive,
``timeoutSeconds`` for the whole exchange, same-host redirects followed (at most 10), 10 KiB of the
body kept. 200-399 passes (3xx: the kubelet logs a warning), anything else fails."""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

from .errors import UnsupportedPodFeature
from .podspec import HttpGet

USER_AGENT = "kube-probe/1.32"
MAX_BODY = 10 * 1024
MAX_REDIRECTS = 10


@dataclass(frozen=True)
class HttpOutcome:
    success: bool
    output: str
    status: int | None
    timed_out: bool = False


CLONE_NEWNET = 0x40000000


def socket_in_netns(netns_path: str) -> socket.socket:
    """A TCP socket created inside a network namespace (by a short-lived thread that joins it: setns
    applies to the calling thread only); it stays in that namespace for its lifetime."""
    made: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns_path}")
                made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            finally:
                os.close(fd)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            made.append(exc)

    thread = threading.Thread(target=enter, name="netns-socket")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class _NetnsConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float, netns: str):
        super().__init__(host, port, timeout=timeout)
        self.netns = netns

    def connect(self) -> None:
        sock = socket_in_netns(self.netns)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_get(host: str, action: HttpGet, timeout: float, netns: str | None = None) -> HttpOutcome:
    """``netns``: send from inside that network namespace (to the pod IP, through its loopback):
    how the runner reaches an isolated pod as the kubelet on its node still would."""
    deadline = time.monotonic() + timeout
    port, path = action.port, action.path
    for _ in range(MAX_REDIRECTS + 1):
        outcome, redirect = _exchange(host, port, path, deadline, netns)
        if redirect is None:
            return outcome
        port, path = redirect
    return HttpOutcome(False, f"Get http://{host}:{port}{path}: stopped after {MAX_REDIRECTS} redirects", None)


def _exchange(
    host: str, port: int, path: str, deadline: float, netns: str | None = None
) -> tuple[HttpOutcome, tuple[int, str] | None]:
    """One request: its outcome, and (port, path) when it is a redirect the kubelet follows."""
    url = f"http://{host}:{port}{path}"
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return HttpOutcome(False, f"Get {url}: context deadline exceeded", None, timed_out=True), None
    conn = (
        _NetnsConnection(host, port, remaining, netns)
        if netns
        else http.client.HTTPConnection(host, port, timeout=remaining)
    )
    try:
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"})
        response = conn.getresponse()
        body = response.read(MAX_BODY).decode(errors="replace")
        status, location = response.status, response.getheader("Location")
    except TimeoutError:
        return HttpOutcome(False, f"Get {url}: context deadline exceeded", None, timed_out=True), None
    except (OSError, http.client.HTTPException) as exc:
        return HttpOutcome(False, f"Get {url}: {exc}", None), None
    finally:
        conn.close()
    if 300 <= status < 400 and location:
        target = urllib.parse.urlsplit(urllib.parse.urljoin(url, location))
        # The kubelet follows redirects to the same host only; otherwise the 3xx itself decides.
        if target.hostname == host:
            if target.scheme != "http":
                raise UnsupportedPodFeature("httpGet", f"redirect to {target.scheme}: not emulated (only HTTP)")
            return HttpOutcome(True, body, status), (
                target.port or 80,
                (target.path or "/") + (f"?{target.query}" if target.query else ""),
            )
    if 200 <= status < 400:
        return HttpOutcome(True, body, status), None
    return HttpOutcome(False, f"HTTP probe failed with statuscode: {status}\n{body}", status), None
