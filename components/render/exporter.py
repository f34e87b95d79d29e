"""What the metrics sidecars (oliver006/redis_exporter, MIT) are told: their flags and password files.

Every pod's exporter scrapes its Valkey as ``acl.EXPORTER_USER``; in a group with Sentinels, a
second exporter scrapes the pod's Sentinel as ``sentinel_conf.METRICS_USER`` (the same flags, another
address, port and user: ``sentinel_args``). The Sentinel is a server of its own with its own
users, so one exporter cannot log in to both, and redis_exporter scrapes one address per
process (``/scrape?target=`` would dial any address a caller names: disabled). Passwords reach
an exporter only as a mounted file (``paths.EXPORTER_PASSWORD_FILE``,
``paths.SENTINEL_EXPORTER_PASSWORD_FILE``): never in arguments or the environment. The containers
are built in ``specs.exporter``.
"""

from __future__ import annotations

import json

from ..config.models import METRICS_PORT, SENTINEL_METRICS_PORT
from .acl import EXPORTER_USER
from .paths import EXPORTER_PASSWORD_FILE, SENTINEL_EXPORTER_PASSWORD_FILE
from .sentinel_conf import METRICS_USER as SENTINEL_METRICS_USER

RELOAD_URL = f"http://127.0.0.1:{METRICS_PORT}/-/reload"
"""Re-reads the password file (redis_exporter's reloadPwdFile handler; Debian's 1.45 lacks it)."""


def redis_addr(port: int, tls: bool = False) -> str:
    """Under TLS the server certificate must name 127.0.0.1 (an IP SAN): Go checks it."""
    return f"{'rediss' if tls else 'redis'}://127.0.0.1:{port}"


def password_file(port: int, password: str, tls: bool = False, user: str = EXPORTER_USER) -> str:
    """``--redis.password-file`` is a JSON map of address to password. Exporter 1.45 looks up the
    address as given; later versions (the newest source read) first insert ``--redis.user``, as in
    ``redis://metrics@127.0.0.1:6379``. Both keys, so either version finds the password."""
    addr = redis_addr(port, tls)
    with_user = addr.replace("://", f"://{user}@", 1)
    return json.dumps({addr: password, with_user: password}, sort_keys=True) + "\n"


def args(
    port: int,
    password_path: str = EXPORTER_PASSWORD_FILE,
    listen: str = f":{METRICS_PORT}",
    tls_ca_path: str | None = None,
    user: str = EXPORTER_USER,
) -> list[str]:
    """Flags that the pinned image and Debian's 1.45 both accept (Go's flag parser exits on unknown ones)."""
    tls = [f"--tls-ca-cert-file={tls_ca_path}"] if tls_ca_path else []
    return [
        f"--redis.addr={redis_addr(port, tls_ca_path is not None)}",
        *tls,
        f"--redis.user={user}",
        f"--redis.password-file={password_path}",
        f"--web.listen-address={listen}",
        "--set-client-name=false",
        # No CONFIG GET (refused by acl.EXPORTER_RULES anyway). 1.45 sends "-" as a command name,
        # which Valkey rejects as unknown: the same effect, without an ACL log entry.
        "--config-command=-",
        # Below Prometheus' scrape timeout: a hung Valkey shows as redis_up 0, not as a failed scrape.
        "--connection-timeout=5s",
    ]


def sentinel_args(
    sentinel_port: int,
    password_path: str = SENTINEL_EXPORTER_PASSWORD_FILE,
    listen: str = f":{SENTINEL_METRICS_PORT}",
    tls_ca_path: str | None = None,
) -> list[str]:
    """The Sentinel's exporter: ``args`` towards the pod's Sentinel, as its ``metrics`` user. On a
    Sentinel, --config-command=- skips nothing 1.45 would not be refused anyway (a Sentinel has no
    CONFIG); the exporter finds the Sentinel section in INFO and asks the SENTINEL commands
    ``sentinel_conf.METRICS_RULES`` grants."""
    return args(sentinel_port, password_path, listen, tls_ca_path, user=SENTINEL_METRICS_USER)


def sentinel_password_file(sentinel_port: int, password: str, tls: bool = False) -> str:
    return password_file(sentinel_port, password, tls, user=SENTINEL_METRICS_USER)


PINNED_ONLY_ARGS = [
    # No LATENCY LATEST/HISTOGRAM, refused anyway: the log shows real errors only.
    "--exclude-latency-histogram-metrics",
    # /scrape?target= would dial any address a caller names, logged in as our user.
    "--disable-scrape-endpoint",
]
"""Flags of the pinned image that Debian's 1.45 (the tests' exporter) does not know."""
