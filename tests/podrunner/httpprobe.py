"""The kubelet's httpGet probe (pkg/probe/http): a GET from the node to the pod IP, no keep-alive,
``timeoutSeconds`` for the whole exchange, same-host redirects followed (at most 10), 10 KiB of the
body kept. 200-399 passes (3xx: the kubelet logs a warning), anything else fails."""

from __future__ import annotations

import http.client
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


def http_get(host: str, action: HttpGet, timeout: float) -> HttpOutcome:
    deadline = time.monotonic() + timeout
    port, path = action.port, action.path
    for _ in range(MAX_REDIRECTS + 1):
        outcome, redirect = _exchange(host, port, path, deadline)
        if redirect is None:
            return outcome
        port, path = redirect
    return HttpOutcome(False, f"Get http://{host}:{port}{path}: stopped after {MAX_REDIRECTS} redirects", None)


def _exchange(host: str, port: int, path: str, deadline: float) -> tuple[HttpOutcome, tuple[int, str] | None]:
    """One request: its outcome, and (port, path) when it is a redirect the kubelet follows."""
    url = f"http://{host}:{port}{path}"
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return HttpOutcome(False, f"Get {url}: context deadline exceeded", None, timed_out=True), None
    conn = http.client.HTTPConnection(host, port, timeout=remaining)
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
