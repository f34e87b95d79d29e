"""The metrics sidecar of a Valkey pod: oliver006/redis_exporter (MIT), logged in as its own ACL user.

No Pulumi resources here: the pod template places the container and volume these functions return,
the config Secret carries ``password_file(...)`` under ``SECRET_KEY``, and the ACL file gets
``acl_user(...)``. The password reaches the exporter only as a mounted file: never in arguments or
the environment.
"""

from __future__ import annotations

import json
import posixpath

import pulumi_kubernetes as k8s

from .security_context import restricted
from .valkey_conf import AclUser

# v1.92.1: a recent release that has --disable-scrape-endpoint (since v1.83.0). The tag without a
# suffix is the scratch image, which runs as USER 59000:59000 and has no shell.
IMAGE = "oliver006/redis_exporter:v1.92.1"
METRICS_PORT = 9121
PORT_NAME = "metrics"
EXPORTER_UID = 59000
EXPORTER_USER = "metrics"

# Measured on Valkey 8.1.8 with Debian's exporter 1.45 (tests/test_monitoring_e2e.py repeats it):
# INFO is the only command whose refusal fails a scrape (redis_up 0), and INFO ALL holds every
# input of the recording rules. Everything else the exporter tries only adds optional metrics and
# is refused: CONFIG GET (redis_config_*; it would also hand out masterauth, the replication
# password, in plain text; skipped by a flag), CLIENT SETNAME (skipped by a flag), SLOWLOG LEN/GET
# (GET returns slow commands' arguments: key names and values), LATENCY LATEST/HISTOGRAM. From the
# source of later versions: COMMANDLOG LEN and CONFIG GET commandlog-* are refused alike; CLIENT
# LIST, MODULE LIST, key checks (SCAN, GET, ...) and CLUSTER INFO run only when a flag we do not
# set or cluster mode asks for them. No key patterns (~) and no channels: it never reads data.
EXPORTER_RULES = "-@all +info"

SECRET_KEY = "exporter-password.json"
"""Key of the exporter's password file in the instance's config Secret."""
VOLUME_NAME = "exporter-credentials"
PASSWORD_FILE = "/etc/valkey-exporter/password.json"
RELOAD_URL = f"http://127.0.0.1:{METRICS_PORT}/-/reload"
"""Re-reads the password file (redis_exporter's reloadPwdFile handler; Debian's 1.45 lacks it)."""
CA_FILE = "/etc/valkey-exporter/ca-bundle.crt"
"""Under TLS: the CA bundle, projected from the config Secret next to the password file."""


def acl_user(password: str) -> AclUser:
    return AclUser(EXPORTER_USER, (password,), EXPORTER_RULES)


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
    port: int, password_path: str = PASSWORD_FILE, listen: str = f":{METRICS_PORT}", tls_ca_path: str | None = None
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
        # No CONFIG GET (refused by EXPORTER_RULES anyway). 1.45 sends "-" as a command name,
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


def volume(config_secret: str, ca_key: str | None = None) -> k8s.core.v1.VolumeArgs:
    """Only the exporter's keys of the config Secret: the sidecar never sees valkey.conf (masterauth).
    ``ca_key``: the Secret's CA bundle key, under TLS."""
    items = [k8s.core.v1.KeyToPathArgs(key=SECRET_KEY, path=posixpath.basename(PASSWORD_FILE))]
    if ca_key is not None:
        items.append(k8s.core.v1.KeyToPathArgs(key=ca_key, path=posixpath.basename(CA_FILE)))
    return k8s.core.v1.VolumeArgs(
        name=VOLUME_NAME,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=config_secret,
            items=items,
            # Group-readable: the exporter's uid reads it through the pod's fsGroup.
            default_mode=0o440,
        ),
    )


def container(
    valkey_port: int, password_path: str = PASSWORD_FILE, image: str = IMAGE, tls: bool = False
) -> k8s.core.v1.ContainerArgs:
    """The sidecar. ``password_path`` is where ``volume()`` is mounted plus the file name; ``tls``
    (with ``volume(..., ca_key=...)``) connects over TLS, verifying against the mounted CA bundle."""
    mount_path = posixpath.dirname(password_path)
    ca_path = posixpath.join(mount_path, posixpath.basename(CA_FILE))

    def health(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        # /health answers without asking Valkey: a slow or loading Valkey never restarts the exporter,
        # and the exporter never makes the pod unready on Valkey's account.
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=PORT_NAME),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    return k8s.core.v1.ContainerArgs(
        name="exporter",
        image=image,
        image_pull_policy="IfNotPresent",
        # The image's entrypoint, spelt out: what runs is exactly this line.
        command=["/redis_exporter"],
        args=args(valkey_port, password_path, tls_ca_path=ca_path if tls else None) + PINNED_ONLY_ARGS,
        ports=[k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=METRICS_PORT, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "64Mi"}
        ),
        security_context=restricted(EXPORTER_UID, EXPORTER_UID),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=VOLUME_NAME, mount_path=mount_path, read_only=True)],
        liveness_probe=health(period=10, failures=3),
        readiness_probe=health(period=10, failures=3),
    )
