"""What the group drills share: a group of three started on the pod runner and settled, region 2's
way to region 1, an application writing through ``host``, and the questions every drill asks of a
group (who is labelled primary, what each Sentinel knows, whom a node replicates from).

Used by tests/test_group_drills.py, tests/test_group_upgrade.py and bench/group.py. Rendering differs
from the stack files only by ``harness.NO_TLS``, the image and the group size.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import harness
import valkey
from drills_support import CONNECTION_ERRORS, admin, app, link_up
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import info
from valkey_process import wait_for

from components.credentials import SENTINEL_SECRET_KEY
from components.render.sentinel_conf import CLIENT_USER
from components.specs.labels import NODE_ROLE_LABEL

T = TypeVar("T")


NAMESPACE = "databases"


HOST = f"sessions.{NAMESPACE}.svc.cluster.local"


WRITE_RATE = 5000.0


SENTINEL_PORT = 26379


IMAGES = {"8.1": "valkey/valkey:8.1.8-alpine", "9.1": "valkey/valkey:9.1.2-alpine"}


REGION1_STACK = "organization/valkey/region1"


REGION2_STACK = "organization/valkey/region2"


EXTERNAL2 = "sessions.region2.example.com"


def group_config(image: str) -> dict[str, object]:
    return {**harness.NO_TLS, "image": image, "instances.sessions.replicas": 3}


def region2_of(region1: harness.Rendered, image: str) -> harness.Rendered:
    """Region 2 from its stack file (a following group). Drills 1 and 2 start only its pod 0, the
    head: the one pod that replicates across regions."""
    return harness.render("region2", {**harness.NO_TLS, "image": image}, references={REGION1_STACK: region1})


EXTERNAL1 = "sessions.region1.example.com"


LATENCY = 0.040
"""One way, seconds: the link between the regions (region 2 is behind region 1's own replicas, as
it is in production; with none, region 2 may be ahead of the replica promoted after a kill -9, and
then rightly copies everything again to drop what the new primary never had)."""


class CrossRegionLink(threading.Thread):
    """Region 2's way to region 1's external endpoint: a proxy with the cross-region latency whose
    target follows the LoadBalancer's endpoint (the pod labelled primary), as the cloud's load
    balancer does, checked every 50 ms."""

    def __init__(self, runner: PodRunner, first: Pod):
        super().__init__(name="cross-region-link", daemon=True)
        self.runner = runner
        self.proxy = runner.proxy(first, latency=LATENCY)
        runner.add_host(EXTERNAL1, self.proxy.host, region="region2")
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                endpoints = self.runner.resolve(EXTERNAL1, "region1")
            except Exception:  # noqa: BLE001 - the runner is closing: the link goes with it
                return
            if endpoints:
                self.proxy.target = (endpoints[0], self.proxy.target[1])

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def attached(r2: harness.Rendered, dr: Pod, timeout: float, what: str) -> None:
    with admin(r2, "sessions", dr.address) as c:
        wait_for(lambda: link_up(c), timeout, what)


def start_region2_head(runner: PodRunner, r2: harness.Rendered, primary: Pod) -> tuple[Pod, CrossRegionLink]:
    """Region 2's pod 0 (its head), replicating from region 1 over the cross-region link."""
    link = CrossRegionLink(runner, primary)
    dr = runner.start_pod(r2, "sessions", 0, region="region2")
    attached(r2, dr, 20, "region 2 attached")
    return dr, link


def resyncs(pod: Pod) -> tuple[int, int]:
    """(full, partial) resynchronizations a replica's log shows so far."""
    log = pod.logs("valkey")
    return log.count("Full resync from primary"), log.count("Successful partial resynchronization")


ASKS = re.compile(r"Replica (\S+) asks for synchronization")
AHEAD = re.compile(r"Partial resynchronization not accepted: Requested offset for second ID was (\d+), "
                   r"but I can reply up to (\d+)")  # fmt: skip


def refused_ahead(primary: Pod) -> list[tuple[str, int, int]]:
    """(replica, offset asked, offset it can reply up to) of each replica ``primary`` refused a
    partial resync because it asked to continue past the history ``primary`` had received from its
    own old primary: the replica was **ahead** of ``primary`` when ``primary`` was promoted
    (docs/design.md, "A replica ahead of a newly promoted primary"), and is copied anew. A full
    resync for any other reason is not in this list. The replica is named as it announces itself
    (``<pod>.<suffix>.invalid:6379`` for region 2's)."""
    refused, asking = [], ""
    for line in primary.logs("valkey").splitlines():
        if match := ASKS.search(line):
            asking = match.group(1)
        elif match := AHEAD.search(line):
            refused.append((asking, int(match.group(1)), int(match.group(2))))
    return refused


def region2_ahead(new: Pod) -> list[tuple[str, int, int]]:
    """Region 2's refusals among ``new``'s (its members announce names under .invalid)."""
    return [refusal for refusal in refused_ahead(new) if ".invalid:" in refusal[0]]


@dataclass
class Outage:
    started: float
    ended: float | None = None


@dataclass(eq=False)
class ReconnectingWriter(threading.Thread):
    """SETs ``<prefix>:<n>`` in pipelined batches at ``rate`` keys/s through the ``host`` endpoint
    as an application with a retry loop would: on any error it resolves the name again and
    reconnects. Only batches whose replies all arrived count as acknowledged."""

    connect: Callable[[], valkey.Valkey]
    prefix: str
    rate: float = WRITE_RATE
    batch: int = 10
    acked: list[tuple[int, float]] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(name=f"writer-{self.prefix}", daemon=True)
        self._stop_event = threading.Event()

    def run(self) -> None:
        client: valkey.Valkey | None = None
        interval = self.batch / self.rate
        due = time.monotonic()
        seq = 0
        while not self._stop_event.is_set():
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            elif now - due > 0.5:
                due = now
            due += interval
            try:
                if client is None:
                    client = self.connect()
                pipe = client.pipeline(transaction=False)
                for n in range(seq, seq + self.batch):
                    pipe.set(f"{self.prefix}:{n}", n)
                pipe.execute()
            except (*CONNECTION_ERRORS, valkey.ResponseError) as error:
                if not self.outages or self.outages[-1].ended is not None:
                    self.outages.append(Outage(time.monotonic()))
                if len(self.errors) < 50:
                    self.errors.append(type(error).__name__ + ": " + str(error)[:80])
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.02)
                continue
            if self.outages and self.outages[-1].ended is None:
                self.outages[-1].ended = time.monotonic()
            self.acked.append((seq, time.monotonic()))
            seq += self.batch
        if client is not None:
            client.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def keys(self) -> list[str]:
        return [f"{self.prefix}:{n}" for first, _ in self.acked for n in range(first, first + self.batch)]

    def longest_outage(self) -> float:
        return max(((o.ended or time.monotonic()) - o.started for o in self.outages), default=0.0)


def start_group(runner: PodRunner, rendered: harness.Rendered) -> list[Pod]:
    """The StatefulSet's pods, once one is labelled primary and every Sentinel knows the two
    replicas and the two other Sentinels (a Sentinel learns a new replica at its next INFO, every
    10 s: one elected before that aborts the failover with -failover-abort-no-good-slave)."""
    pods = runner.start_statefulset(rendered, "sessions", region="region1")
    wait_for(lambda: primary_pod(pods) is not None, 30, "one pod labelled primary")
    logged(
        pods, lambda: wait_for(lambda: all(settled(rendered, p) for p in pods), 60, "every Sentinel knows the group")
    )
    return pods


def master_name(rendered: harness.Rendered) -> str:
    """The name this region's Sentinels know the group by (each region has its own)."""
    return str(rendered.exports["instances"]["sessions"]["sentinelMasterName"])


def sentinel(rendered: harness.Rendered, pod: Pod) -> valkey.Valkey:
    """A Sentinel-aware application's login: user client, password from the client Secret."""
    password = rendered.secret_data("sessions-credentials")[SENTINEL_SECRET_KEY]
    return valkey.Valkey(
        host=pod.address,
        port=SENTINEL_PORT,
        username=CLIENT_USER,
        password=password,
        socket_timeout=5,
        socket_connect_timeout=2,
        decode_responses=True,
    )


def settled(rendered: harness.Rendered, pod: Pod) -> bool:
    """This pod's Sentinel knows both other Sentinels and the group's two replicas, each healthy
    (flags exactly ``slave``: not down, not disconnected). Region 2's replica, which the primary
    also lists, is not the group's."""
    with sentinel(rendered, pod) as s:
        master = s.execute_command("SENTINEL", "MASTER", master_name(rendered))
        replicas = s.execute_command("SENTINEL", "REPLICAS", master_name(rendered))
    fields = {str(k): str(v) for k, v in zip(master[::2], master[1::2], strict=True)}
    members = [dict(zip(r[::2], r[1::2], strict=True)) for r in replicas]
    flags = [m.get("flags") for m in members if ".sessions-headless." in str(m.get("name"))]
    return fields["num-other-sentinels"] == "2" and flags == ["slave", "slave"]


LABEL_STALL_SECONDS = 60
"""How long a label change may take in the pod runner, for waits that no figure depends on: a
margin kept from when the runner's bridge changed its MAC as pods came and went, and a label
updater's requests to the API stand-in timed out for 30 s and more (fixed: docs/testing.md).
Valkey itself never waits on a label."""


def primary_pod(pods: list[Pod]) -> Pod | None:
    """The one pod labelled primary now (None while none or several are)."""
    labelled = [p for p in pods if p.labels.get(NODE_ROLE_LABEL) == "primary"]
    return labelled[0] if len(labelled) == 1 else None


def another_primary(pods: list[Pod], old: Pod) -> Pod | None:
    now = primary_pod(pods)
    return now if now is not old else None


def host_client(runner: PodRunner, rendered: harness.Rendered, region: str = "region1") -> valkey.Valkey:
    """An application's connection through ``region``'s ``host`` Service, as its DNS answers now."""
    addresses = runner.resolve(HOST, region)
    if not addresses:
        raise valkey.ConnectionError(f"{HOST} has no endpoint")
    return app(rendered, "sessions", addresses[0])


def logged(pods: list[Pod], step: Callable[[], T]) -> T:
    """``step()``; when it fails, the Sentinels' and servers' logs first, to say why."""
    try:
        return step()
    except (AssertionError, TimeoutError):
        for pod in pods:
            for container in ("sentinel", "keeper", "valkey", "labeler"):
                print(f"----- {pod.name} {container}\n{pod.logs(container)[-3000:]}")
        raise


def node_role(rendered: harness.Rendered, pod: Pod) -> str:
    with admin(rendered, "sessions", pod.address) as c:
        return str(info(c, "replication")["role"])


def replicated(rendered: harness.Rendered, pod: Pod, key: str) -> bool:
    with app(rendered, "sessions", pod.address) as c:
        return bool(c.get(key) == b"1")


def follows(rendered: harness.Rendered, pod: Pod) -> str:
    """``<host>`` a replica replicates from, or ``master``."""
    with admin(rendered, "sessions", pod.address) as c:
        replication = info(c, "replication")
    return "master" if replication["role"] == "master" else str(replication["master_host"])


def longest_pause(writer: ReconnectingWriter) -> float:
    """The longest time between two acknowledged batches (a paused write and an error alike)."""
    times = [t for _, t in writer.acked]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
