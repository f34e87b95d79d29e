"""A planned switchover between the regions with no acknowledged write lost: the old primary's
writes pause, the other region's copy receives everything, the roles swap, writes resume there.

    python -m ops.switchover --old HOST:PORT --new HOST:PORT --new-external HOST:PORT \\
        [--old-member HOST:PORT ...] [--old-region REGION] [--tls-ca FILE] [--pause-timeout SECONDS]

Logins come from the environment, never from arguments: ``OLD_ADMIN_PASSWORD`` and
``NEW_ADMIN_PASSWORD`` (each region's ``<instance>-admin-credentials``, user ``admin``), and
``NEW_REPLICATION_PASSWORD`` (the new primary's region's replication password, its stack output
``replicationCredentials``; user ``replication``), with which the old primary then replicates.

**Groups**: the old primary's other replicas are the members of its group (its region's), which
the tool reaches by the names they announce (in the cluster, e.g. from a toolbox pod) or at the
``--old-member HOST:PORT`` given for each (a port-forward); the new node is the other region's
head, whose members replicate it and follow it when it is promoted. After its checks, the
tool sets ``replica-priority 0`` on every node of the old group, so its Sentinels, which see their
primary turn into a replica, have no one to promote beside the new region's primary; that group's
next ``pulumi up`` (as a following group) renders the same.

The steps, each checked before the next (docs/runbooks.md#runbook-planned-switchover):

1. Checks: the old node is a primary; the new one is its replica (the same replication ID), with
   its link up, and connected to it directly (the old primary lists the name the new one
   announces); the replication login works on the new one; every other replica of the old
   primary is a member the tool can log in to, replicating it.
2. ``replica-priority 0`` on the old group's nodes, then ``CLIENT PAUSE <timeout> WRITE`` on the
   old primary: writes wait, reads go on.
3. Wait until the new node's offset reaches the old one's.
4. The old primary becomes a replica of the new one's external endpoint (``REPLICAOF``, as the
   replication user), a group member announcing ``<pod>.<old region>.invalid`` (``--old-region``)
   as a following group's members do: the new region's Sentinels would take its pod name for
   their own pod of that name. From here on neither region takes writes, and the old offset is final:
   wait until the new node has that too (a replication PING may have been sent meanwhile).
5. ``REPLICAOF NO ONE`` on the new node: it takes writes. The old one resumes from it later
   (psync2: the same history under the new primary's second replication ID).
6. ``CLIENT UNPAUSE`` on the old node: the writes that waited there get ``READONLY``.

A failure before 5 puts the old primary back (``REPLICAOF NO ONE`` whether or not its demotion
was answered, its ``masteruser``/``masterauth``/``replica-announce-ip`` and the members'
``replica-priority`` restored, unpaused), each step tried whatever the others did: nothing
changed, and the message says so, or it names what could not be undone. If 5 fails, no region
takes writes: promote the new one by hand (the promotion runbook). Any other error reports the
roles both nodes have then. Valkey's ``FAILOVER TO`` does 2-6 inside one server,
but only towards a replica that announces an address the old primary can reach; region 2's
replicas do not (docs/design.md#planned-switchover), so this drives the same steps across two.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import valkey

ADMIN_USER = "admin"
REPLICATION_USER = "replication"
MIN_PAUSE_S = 2.0
"""The pause must outlast the waits (each at most half of it) by a margin."""
ANNOUNCE = "replica-announce-ip"


class SwitchoverError(Exception):
    """A check or step failed; the message says what state the regions are left in."""


@dataclass(frozen=True)
class Node:
    host: str
    port: int
    password: str
    username: str = ADMIN_USER
    tls_ca: str | None = None

    def connect(self, username: str | None = None, password: str | None = None) -> valkey.Valkey:
        tls = {"ssl": True, "ssl_ca_certs": self.tls_ca} if self.tls_ca else {}
        client = valkey.Valkey(
            host=self.host,
            port=self.port,
            username=username or self.username,
            password=password or self.password,
            socket_timeout=5,
            socket_connect_timeout=3,
            decode_responses=True,
            **tls,  # type: ignore[arg-type]
        )
        # INFO as the server sends it: valkey-py's parser turns values that look numeric (a
        # replication ID of digits) into numbers.
        client.set_response_callback("INFO", lambda response, **_: response)
        return client

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
        """From the pause to the new primary taking writes: how long a write had no primary."""
        return self.promoted_at - self.paused_at


def _replication(c: valkey.Valkey) -> dict[str, str]:
    reply = c.execute_command("INFO", "replication")
    if not isinstance(reply, str):  # raw text: valkey-py's parser would make an ID look numeric
        raise SwitchoverError(f"INFO replication answered {type(reply).__name__}")
    fields = (line.split(":", 1) for line in reply.splitlines() if ":" in line)
    return {key: value.strip() for key, value in fields}


def _config(c: valkey.Valkey, name: str) -> str:
    reply = c.config_get(name)
    if not isinstance(reply, dict) or name not in reply:
        raise SwitchoverError(f"CONFIG GET {name} answered {reply!r}")
    return str(reply[name])


def _role(node: Node) -> str:
    try:
        with node.connect() as c:
            return str(_replication(c).get("role"))
    except (valkey.ValkeyError, SwitchoverError) as error:
        return f"unknown ({error})"


def switchover(
    old: Node,
    new: Node,
    new_external: tuple[str, int],
    replication_password: str,
    *,
    old_members: Sequence[Node] | None = None,
    old_region: str | None = None,
    pause_timeout_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> Result:
    """``old_members``: the old primary's other replicas (its group), each as the tool logs in to
    it; None finds them by the names the old primary lists them under. ``old_region``: the old
    primary's region, required when it announces a name (a group member): it then announces
    ``<pod>.<old_region>.invalid`` to the new primary, as a following group's members do."""
    if pause_timeout_s < MIN_PAUSE_S:
        raise SwitchoverError(f"a pause of {pause_timeout_s:g}s is too short (at least {MIN_PAUSE_S:g}s)")
    steps: list[str] = []

    def say(message: str) -> None:
        steps.append(message)
        log(f"switchover: {message}")

    with old.connect() as o, new.connect() as n:
        try:
            members = _check(o, n, old, new, replication_password, old_members)
            saved = {k: str(v) for k, v in o.config_get("master*").items() if k in ("masteruser", "masterauth")}
            saved[ANNOUNCE] = _config(o, ANNOUNCE)
            announce = _announce_across(saved[ANNOUNCE], old, old_region)
        except (valkey.ValkeyError, KeyError, OSError) as error:
            raise SwitchoverError(f"{error}: nothing changed") from error
        priorities: dict[Node, str] = {}
        try:
            _hold([old, *members], priorities)
            if members:
                say(f"replica-priority 0 on {', '.join(str(m) for m in (old, *members))}: no Sentinel promotes them")
            o.execute_command("CLIENT", "PAUSE", int(pause_timeout_s * 1000), "WRITE")
            paused_at = time.monotonic()
            say(f"writes paused on {old} (at most {pause_timeout_s:g}s)")
            deadline = paused_at + pause_timeout_s / 2
            target = _wait_caught_up(o, n, new, deadline)
            caught_up_at = time.monotonic()
            say(f"{new} has offset {target}")
            _demote(o, new_external, replication_password, announce)
            demoted_at = time.monotonic()
            named = f", announcing {announce}" if announce else ""
            say(f"{old} replicates from {new_external[0]}:{new_external[1]}{named} (it takes no writes now)")
            # Final now: a replica without a link adds nothing. Wait for what was sent meanwhile.
            target = _wait_caught_up(o, n, new, deadline)
        except BaseException as error:  # an interrupt too: nothing may stay half done
            raise _undone(error, old, _put_back(o, saved, priorities)) from error
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
            say(f"{old} unpaused: the writes that waited there get READONLY")
        except valkey.ValkeyError as error:
            say(f"{old} could not be unpaused ({error}); its pause ends by itself, and it is a replica")
        unpaused_at = time.monotonic()
    return Result(target, paused_at, caught_up_at, demoted_at, promoted_at, unpaused_at, steps)


def _check(  # noqa: PLR0917 - one call site, in order
    o: valkey.Valkey,
    n: valkey.Valkey,
    old: Node,
    new: Node,
    replication_password: str,
    old_members: Sequence[Node] | None,
) -> list[Node]:
    """Every check before anything changes; returns the old primary's members."""
    before_old, before_new = _replication(o), _replication(n)
    if before_old.get("role") != "master":
        raise SwitchoverError(f"{old} is not a primary ({before_old.get('role')})")
    if before_new.get("role") != "slave" or before_new.get("master_link_status") != "up":
        raise SwitchoverError(f"{new} is not a replica with its link up")
    if before_new.get("master_replid") != before_old.get("master_replid"):
        raise SwitchoverError(f"{new} does not replicate {old} (another replication ID): check --old and --new")
    members = _members(before_old, before_new, n, old, new, old_members)
    if not replication_password or replication_password == "null":
        raise SwitchoverError("the new region's replication password is empty")
    try:
        with new.connect(REPLICATION_USER, replication_password) as r:
            r.ping()
    except valkey.exceptions.NoPermissionError:
        pass  # logged in: the replication user may not PING
    except valkey.AuthenticationError as error:
        raise SwitchoverError(f"{new} refuses the replication login ({error})") from error
    return members


def _members(  # noqa: PLR0917 - one call site, in order
    before_old: dict[str, str],
    before_new: dict[str, str],
    n: valkey.Valkey,
    old: Node,
    new: Node,
    old_members: Sequence[Node] | None,
) -> list[Node]:
    """The old primary's replicas other than the new node, each checked to replicate it."""
    listed = _replicas(before_old)
    names = ", ".join(f"{host}:{port}" for host, port in listed) or "none"
    announced = _config(n, ANNOUNCE)
    if announced:
        if announced not in [host for host, _ in listed]:
            raise SwitchoverError(
                f"{new} announces {announced}, which {old} does not list among its replicas ({names}): "
                "--new must be the node that replicates the old primary directly (the other region's head)"
            )
        others = [(host, port) for host, port in listed if host != announced]
    elif len(listed) == 1 and before_new.get("connected_slaves", "0") == "0":
        others = []  # a single pod on each side: the old primary's one replica is the new one
    else:
        raise SwitchoverError(f"{new} announces no name, so it cannot be told apart among {old}'s replicas")
    members = list(old_members) if old_members is not None else [replace(old, host=h, port=p) for h, p in others]
    if len(members) != len(others):
        raise SwitchoverError(
            f"{old} has {len(others)} other replica(s) ({', '.join(f'{h}:{p}' for h, p in others) or 'none'}); "
            f"{len(members)} --old-member given: give each of them"
        )
    unmatched = {host for host, _ in others}
    for member in members:
        try:
            with member.connect() as m:
                state = _replication(m)
                name = _config(m, ANNOUNCE)
        except (valkey.ValkeyError, OSError) as error:
            raise SwitchoverError(
                f"cannot log in to {member}, a replica of {old} ({error}): give --old-member for each (a port-forward)"
            ) from error
        if state.get("role") != "slave" or state.get("master_replid") != before_old.get("master_replid"):
            raise SwitchoverError(f"{member} is not a replica of {old}")
        # The new region's members have the same history: each one given must be a distinct one of
        # the names the old primary lists, or a real member would be left out of the hold.
        if name not in unmatched:
            raise SwitchoverError(
                f"{member} announces {name or 'no name'}, not one of {old}'s other replicas left to match "
                f"({', '.join(sorted(unmatched)) or 'none'}): --old-member must name each member of the old group once"
            )
        unmatched.discard(name)
    return members


def _replicas(replication: dict[str, str]) -> list[tuple[str, int]]:
    """The names and ports a primary lists its replicas under: ``slaveN:ip=<announced>,port=...``."""
    listed = []
    for key, value in replication.items():
        if key.startswith("slave") and key[5:].isdigit():
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            listed.append((fields.get("ip", ""), int(fields.get("port", "0"))))
    return listed


def _hold(nodes: Sequence[Node], priorities: dict[Node, str]) -> None:
    """``replica-priority 0`` on each node, its value before kept in ``priorities``."""
    for node in nodes:
        with node.connect() as c:
            priorities[node] = _config(c, "replica-priority")
            c.config_set("replica-priority", 0)


def _wait_caught_up(o: valkey.Valkey, n: valkey.Valkey, new: Node, deadline: float) -> int:
    while True:
        target = int(_replication(o)["master_repl_offset"])
        have = int(_replication(n).get("slave_repl_offset", "-1"))
        if have >= target:
            return target
        if time.monotonic() > deadline:
            raise SwitchoverError(f"{new} reached offset {have} of {target} in time")
        time.sleep(0.01)


def _demote(o: valkey.Valkey, upstream: tuple[str, int], replication_password: str, announce: str | None) -> None:
    """The old primary replicates ``upstream``, as the replication user."""
    if announce:
        # The new primary lists its replicas by the names they announce, and its Sentinels take a
        # listed name for a node of their own: a group member's name is the same pod name in both
        # clusters. A name under .invalid resolves nowhere.
        o.config_set(ANNOUNCE, announce)
    o.config_set("masteruser", REPLICATION_USER)
    o.config_set("masterauth", replication_password)
    o.execute_command("REPLICAOF", *upstream)


def _announce_across(announced: str, old: Node, old_region: str | None) -> str | None:
    """The name the old primary announces to the new one: None for a node that announces none (a
    single pod), else ``<pod>.<old_region>.invalid``."""
    if not announced:
        return None
    if not old_region:
        raise SwitchoverError(
            f"{old} announces {announced} (a group member): give --old-region, its stack's region, so that it "
            "announces <pod>.<region>.invalid to the new primary"
        )
    return f"{announced.split('.', maxsplit=1)[0]}.{old_region}.invalid"


def _put_back(o: valkey.Valkey, saved: dict[str, str], priorities: dict[Node, str]) -> list[str]:
    """Every change undone, each step tried whatever the others did; returns what failed. The
    old node is made a primary again whatever the tool believes it did: a REPLICAOF whose reply
    was lost may still have run (REPLICAOF NO ONE on a primary changes nothing)."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("REPLICAOF NO ONE", lambda: o.execute_command("REPLICAOF", "NO", "ONE")),
        *((f"{key} back", functools.partial(o.config_set, key, saved.get(key, ""))) for key in saved),
        ("CLIENT UNPAUSE", lambda: o.execute_command("CLIENT", "UNPAUSE")),
    ]
    for member, priority in priorities.items():
        restore = functools.partial(_set_priority, member, priority)
        steps.append((f"{member}'s replica-priority back to {priority}", restore))
    failed = []
    for what, step in steps:
        try:
            step()
        except (valkey.ValkeyError, OSError) as error:
            failed.append(f"{what} ({error})")
    return failed


def _undone(error: BaseException, old: Node, left: list[str]) -> SwitchoverError:
    what = str(error) or type(error).__name__
    if left:
        return SwitchoverError(
            f"{what}; putting {old} back failed: {'; '.join(left)}. Check those by hand: {old} must be the "
            "primary (REPLICAOF NO ONE), unpaused, with its settings and its members' replica-priority back"
        )
    return SwitchoverError(f"{what}; {old} is the primary again and unpaused: nothing changed")


def _set_priority(member: Node, priority: str) -> None:
    with member.connect() as m:
        m.config_set("replica-priority", priority)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: HOST:PORT")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.switchover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=_endpoint, required=True, help="the current primary, HOST:PORT")
    parser.add_argument("--new", type=_endpoint, required=True, help="the other region's replica, HOST:PORT")
    parser.add_argument("--new-external", type=_endpoint, required=True, help="what the old primary replicates from")
    parser.add_argument(
        "--old-member",
        type=_endpoint,
        action="append",
        help="each other replica of the old primary (its group's members), HOST:PORT; default: the names it lists",
    )
    parser.add_argument(
        "--old-region",
        help="the old primary's stack region (groups): it announces <pod>.<region>.invalid to the new primary",
    )
    parser.add_argument("--tls-ca", help="the CA bundle, when the nodes serve TLS")
    parser.add_argument("--pause-timeout", type=float, default=10.0, help="longest write pause, seconds")
    args = parser.parse_args(argv)
    passwords = {}
    for name in ("OLD_ADMIN_PASSWORD", "NEW_ADMIN_PASSWORD", "NEW_REPLICATION_PASSWORD"):
        value = os.environ.get(name, "")
        if value in ("", "null"):
            parser.error(f"{name} is not set (passwords come from the environment, never arguments)")
        passwords[name] = value
    old = Node(args.old[0], args.old[1], passwords["OLD_ADMIN_PASSWORD"], tls_ca=args.tls_ca)
    new = Node(args.new[0], args.new[1], passwords["NEW_ADMIN_PASSWORD"], tls_ca=args.tls_ca)
    try:
        members = None if args.old_member is None else [replace(old, host=h, port=p) for h, p in args.old_member]
        result = switchover(
            old,
            new,
            args.new_external,
            passwords["NEW_REPLICATION_PASSWORD"],
            old_members=members,
            old_region=args.old_region,
            pause_timeout_s=args.pause_timeout,
        )
    except SwitchoverError as error:
        print(f"switchover: failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - whatever went wrong, say where the roles are
        print(
            f"switchover: failed ({type(error).__name__}: {error}); roles now: {old} {_role(old)}, {new} {_role(new)}",
            file=sys.stderr,
        )
        return 1
    print(f"switchover: done; writes had no primary for {result.write_pause_s:.3f}s; offset {result.offset}")
    print("switchover: now make both stacks say so (docs/runbooks.md#runbook-planned-switchover)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
