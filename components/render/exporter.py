"""What the metrics sidecar (oliver006/redis_exporter, MIT) is told: its flags and its password file.

The password reaches the exporter only as a mounted file (``paths.EXPORTER_PASSWORD_FILE``): never
in arguments or the environment. Its ACL user is ``acl.EXPORTER_USER``; the container is built in
``specs.exporter``.
"""

from __future__ import annotations

import json

from ..config.models import METRICS_PORT
from .acl import EXPORTER_USER
from .paths import EXPORTER_PASSWORD_FILE

RELOAD_URL = f"http://127.0.0.1:{METRICS_PORT}/-/reload"
"""Re-reads the password file (redis_exporter's reloadPwdFile handler; Debian's 1.45 lacks it)."""


def redis_addr(port: int, tls: bool = False) -> str:
    """Under TLS the server certificate must name 127.0.0.1 (an IP SAN): Go checks it."""
    return f"{'rediss' if tls else 'redis'}://127.0.0.1:{port}"


def password_file(port: int, password: str, tls: bool = False) -> str:
    """``--redis.password-file`` is a JSON map of address to password. Exporter 1.45 looks up the
    address as given; later versions (the newest source read) first insert ``--redis.user``, as in
    ``redis://metrics@127.0.0.1:6379``. Both keys, so either version finds the password."""
    addr = redis_addr(port, tls)
    with_user = addr.replace("://", f"://{EXPORTER_USER}@", 1)
    return json.dumps({addr: password, with_user: password}, sort_keys=True) + "\n"


def args(
    port: int,
    password_path: str = EXPORTER_PASSWORD_FILE,
    listen: str = f":{METRICS_PORT}",
    tls_ca_path: str | None = None,
) -> list[str]:
    """Flags that the pinned image and Debian's 1.45 both accept (Go's flag parser exits on unknown ones)."""
    tls = [f"--tls-ca-cert-file={tls_ca_path}"] if tls_ca_path else []
    return [
        f"--redis.addr={redis_addr(port, tls_ca_path is not None)}",
        *tls,
        f"--redis.user={EXPORTER_USER}",
        f"--redis.password-file={password_path}",
        f"--web.listen-address={listen}",
        "--set-client-name=false",
        # No CONFIG GET (refused by acl.EXPORTER_RULES anyway). 1.45 sends "-" as a command name,
        # which Valkey rejects as unknown: the same effect, without an ACL log entry.
        "--config-command=-",
        # Below Prometheus' scrape timeout: a hung Valkey shows as redis_up 0, not as a failed scrape.
        "--connection-timeout=5s",
    ]


PINNED_ONLY_ARGS = [
    # No LATENCY LATEST/HISTOGRAM, refused anyway: the log shows real errors only.
    "--exclude-latency-histogram-metrics",
    # /scrape?target= would dial any address a caller names, logged in as our user.
    "--disable-scrape-endpoint",
]
"""Flags of the pinned image that Debian's 1.45 (the tests' exporter) does not know."""
