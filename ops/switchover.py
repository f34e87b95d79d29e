"""A planned switchover between the regions with no acknowledged write lost: the old primary's
writes pause, the other region's head receives everything, the roles swap, writes resume there.

    python -m ops.switchover --old HOST:PORT --new HOST:PORT --new-external HOST:PORT \\
        [--local-replica HOST:PORT ...] [--tls-ca FILE] [--pause-timeout SECONDS]

Logins come from the environment, never from arguments: ``OLD_ADMIN_PASSWORD`` and
``NEW_ADMIN_PASSWORD`` (each region's ``<instance>-admin-credentials``, user ``admin``), and
``NEW_REPLICATION_PASSWORD`` (the new primary's region's replication password, its stack output
``replicationCredentials``; user ``replication``), with which the old primary then replicates.

The steps, each checked before the next (docs/runbooks.md#runbook-planned-switchover):

1. The old primary is a primary and the new one is its replica with its link up; in a group, each
   of the old primary's members (``--local-replica``) gets ``replica-priority 0``, so the group's
   Sentinels cannot promote one once the old primary has become a replica of the other region.
2. ``CLIENT PAUSE <timeout> WRITE`` on the old primary: writes wait (reads go on); the server also
   stops expiring keys, so its offset stays still.
3. Wait until the new primary's offset equals the old one's: it holds every acknowledged write.
4. The old primary becomes a replica of the new one's external endpoint (``REPLICAOF``, as the
   replication user). From here on neither region takes writes, so nothing can be written twice.
   In a group, its members follow the new primary's external endpoint too: whichever pod the
   old group's rollout (to a following group) restarts first, the others still replicate.
5. ``REPLICAOF NO ONE`` on the new primary: it takes writes. In a following group, its members
   follow it (keeper.sh); the old primary and its members resume from it (psync2: the same
   history under the new primary's second replication ID).
6. ``CLIENT UNPAUSE`` on the old primary: the writes that waited there are refused (``READONLY``),
   and applications reconnect to the new primary.

If a step before 4 fails, the old primary is unpaused and the priorities restored: nothing
changed. If 4 succeeded and 5 fails, no region takes writes: run step 5 by hand (the promotion
runbook). Valkey's ``FAILOVER TO`` does 2-6 inside one server, but only towards a replica that
announces an address the old primary can reach; region 2's members announce a name that resolves
nowhere, on purpose (region 1's Sentinels must never reach them), so this drives the same steps
across two servers instead.

Then make both stacks say so, so that the next ``pulumi up`` of each keeps the roles: the tool
prints the ``pulumi config`` commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import valkey

ADMIN_USER = "admin"
REPLICATION_USER = "replication"


class SwitchoverError(Exception):
    """A check or step failed; the message says what state the regions are left in."""


@dataclass(frozen=True)
class Node:
    host: str
    port: int
    password: str
    username: str = ADMIN_USER
    tls_ca: str | None = None

    def connect(self) -> valkey.Valkey:
        tls = {"ssl": True, "ssl_ca_certs": self.tls_ca} if self.tls_ca else {}
        return valkey.Valkey(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=3,
            decode_responses=True,
            **tls,  # type: ignore[arg-type]
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Result:
    offset: int
    """The replication offset both held when the roles swapped."""
    paused_at: float
    caught_up_at: float
    demoted_at: float
    promoted_at: float
    unpaused_at: float
    steps: list[str] = field(default_factory=list)

    @property
    def write_pause_s(self) -> float:
        """From the pause to the new primary taking writes: the longest a write waits, plus the
        time applications take to reconnect to the new primary."""
        return self.promoted_at - self.paused_at


def _replication(c: valkey.Valkey) -> dict[str, str]:
    reply = c.info("replication")
    if not isinstance(reply, dict):  # a synchronous client answers a dict
        raise SwitchoverError(f"INFO replication answered {type(reply).__name__}")
    return {str(k): str(v) for k, v in reply.items()}


def switchover(
    old: Node,
    new: Node,
    new_external: tuple[str, int],
    replication_password: str,
    *,
    local_replicas: Sequence[Node] = (),
    pause_timeout_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> Result:
    steps: list[str] = []

    def say(message: str) -> None:
        steps.append(message)
        log(f"switchover: {message}")

    with old.connect() as o, new.connect() as n:
        try:
            _check(o, n, old, new)
        except valkey.ValkeyError as error:
            raise SwitchoverError(f"{error}: nothing changed") from error
        priorities: dict[Node, str] = {}
        try:
            priorities = _hold_members(local_replicas, say)
            paused_at, caught_up_at, offset = _pause_until_caught_up(o, n, old, new, timeout_s=pause_timeout_s, say=say)
        except (SwitchoverError, valkey.ValkeyError) as error:
            _undo(o, priorities)
            raise SwitchoverError(f"{error}; writes resumed on {old}, priorities restored: nothing changed") from error
        host, port = new_external
        try:
            _follow(o, host, port, replication_password)
            demoted_at = time.monotonic()
            say(f"{old} replicates from {host}:{port} (it takes no writes now)")
        except valkey.ValkeyError as error:
            _undo(o, priorities)
            raise SwitchoverError(f"{old} could not be made a replica ({error}): writes resumed there") from error
        # The old group's members follow the new primary directly too (a partial resync each): so
        # whichever the old group's rollout to a following group restarts first, the others
        # still replicate from outside (each a possible head, render/scripts/group.sh), and none
        # waits on a restarting pod of the old template, which has no keeper to re-point it.
        for replica in local_replicas:
            with replica.connect() as r:
                _follow(r, host, port, replication_password)
        if local_replicas:
            say(f"{', '.join(map(str, local_replicas))} replicate from {host}:{port} too")
        try:
            n.execute_command("REPLICAOF", "NO", "ONE")
        except valkey.ValkeyError as error:
            raise SwitchoverError(
                f"{new} could not be promoted ({error}): no region takes writes; promote it by hand "
                "(docs/runbooks.md#runbook-promote-region-2)"
            ) from error
        promoted_at = time.monotonic()
        say(f"{new} is the primary")
        try:
            o.execute_command("CLIENT", "UNPAUSE")
            say(f"{old} unpaused: the writes that waited there are refused (READONLY)")
        except valkey.ValkeyError as error:
            say(f"{old} could not be unpaused ({error}); its pause ends by itself, and it is a replica")
        unpaused_at = time.monotonic()
    return Result(offset, paused_at, caught_up_at, demoted_at, promoted_at, unpaused_at, steps)


def _follow(c: valkey.Valkey, host: str, port: int, replication_password: str) -> None:
    c.config_set("masteruser", REPLICATION_USER)
    c.config_set("masterauth", replication_password)
    c.execute_command("REPLICAOF", host, port)


def _check(o: valkey.Valkey, n: valkey.Valkey, old: Node, new: Node) -> None:
    before_old, before_new = _replication(o), _replication(n)
    if before_old.get("role") != "master":
        raise SwitchoverError(f"{old} is not a primary ({before_old.get('role')}): nothing changed")
    if before_new.get("role") != "slave" or before_new.get("master_link_status") != "up":
        raise SwitchoverError(f"{new} is not a replica with its link up: nothing changed")


def _hold_members(local_replicas: Sequence[Node], say: Callable[[str], None]) -> dict[Node, str]:
    """replica-priority 0 on the old group's members; returns what each had."""
    priorities: dict[Node, str] = {}
    for replica in local_replicas:
        with replica.connect() as r:
            priorities[replica] = str(r.config_get("replica-priority")["replica-priority"])
            r.config_set("replica-priority", 0)
    if local_replicas:
        say(f"replica-priority 0 on {', '.join(map(str, local_replicas))}: no Sentinel promotes them")
    return priorities


def _pause_until_caught_up(
    o: valkey.Valkey, n: valkey.Valkey, old: Node, new: Node, *, timeout_s: float, say: Callable[[str], None]
) -> tuple[float, float, int]:
    """Pauses writes on the old primary and waits, for at most half the pause, until the new one's
    offset reaches it. Returns (paused at, caught up at, offset)."""
    o.execute_command("CLIENT", "PAUSE", int(timeout_s * 1000), "WRITE")
    paused_at = time.monotonic()
    say(f"writes paused on {old} (at most {timeout_s:g}s)")
    deadline = paused_at + timeout_s / 2
    while True:
        target = int(_replication(o)["master_repl_offset"])
        have = int(_replication(n).get("slave_repl_offset", "-1"))
        if have >= target:
            break
        if time.monotonic() > deadline:
            raise SwitchoverError(f"{new} reached offset {have} of {target} in time")
        time.sleep(0.01)
    say(f"{new} holds everything {old} acknowledged (offset {target})")
    return paused_at, time.monotonic(), target


def _undo(o: valkey.Valkey, priorities: dict[Node, str]) -> None:
    o.execute_command("CLIENT", "UNPAUSE")
    for replica, priority in priorities.items():
        with replica.connect() as r:
            r.config_set("replica-priority", priority)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: HOST:PORT")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.switchover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=_endpoint, required=True, help="the current primary, HOST:PORT")
    parser.add_argument("--new", type=_endpoint, required=True, help="the other region's head, HOST:PORT")
    parser.add_argument("--new-external", type=_endpoint, required=True, help="what the old primary replicates from")
    parser.add_argument("--local-replica", type=_endpoint, action="append", default=[], help="the old group's members")
    parser.add_argument("--tls-ca", help="the CA bundle, when the nodes serve TLS")
    parser.add_argument("--pause-timeout", type=float, default=10.0, help="longest write pause, seconds")
    args = parser.parse_args(argv)
    try:
        old_password = os.environ["OLD_ADMIN_PASSWORD"]
        new_password = os.environ["NEW_ADMIN_PASSWORD"]
        replication_password = os.environ["NEW_REPLICATION_PASSWORD"]
    except KeyError as missing:
        parser.error(f"{missing.args[0]} is not set (passwords come from the environment, never arguments)")
    old = Node(args.old[0], args.old[1], old_password, tls_ca=args.tls_ca)
    new = Node(args.new[0], args.new[1], new_password, tls_ca=args.tls_ca)
    replicas = [Node(host, port, old_password, tls_ca=args.tls_ca) for host, port in args.local_replica]
    try:
        result = switchover(
            old,
            new,
            args.new_external,
            replication_password,
            local_replicas=replicas,
            pause_timeout_s=args.pause_timeout,
        )
    except SwitchoverError as error:
        print(f"switchover: failed: {error}", file=sys.stderr)
        return 1
    print(f"switchover: done; writes paused {result.write_pause_s:.3f}s; offset {result.offset}")
    print("switchover: now make both stacks say so (docs/runbooks.md#runbook-planned-switchover)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
