"""The recording rules and alerts of ``components.render.alerts``, run by promtool (Debian's
prometheus 2.42): ``promtool check rules`` on the rendered file, and ``promtool test rules`` with
input series shaped like the exporter's (Debian's 1.45 and the pinned image name them alike) and
labelled the way the ServiceMonitor labels them. Every recorded series is shown present and
absent, every alert firing and not firing, with its exact labels and annotations.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import needs
import pytest
import yaml
from group_fleets import region1_groups, region2_groups
from rule_cases import RUNBOOK, Cases, MiB, Target, connected_replica, lbl, primary, replica, selector

from components.config.models import AlertThresholds
from components.render.alerts import ALERTS, RECORDS, Topology, rule_groups, runbook_anchor
from components.render.memory_alerts import MemoryShape

PROMTOOL = shutil.which("promtool")

pytestmark = needs.debian({"prometheus": ["promtool"]})


def healthy_fleet(c: Cases) -> None:
    """Region 1's DR primary with its region 2 replica, and a local instance in each region."""
    sessions1 = primary(Target("region1", "sessions"), replicas=1)
    connected_replica(sessions1, "10.20.0.7", "100000+6000x40", "99000+6000x40", "1x40")
    sessions2 = replica(Target("region2", "sessions"), link="1x40", last_io="3x40")
    rate1 = primary(Target("region1", "rate-limiting", "false", "noeviction"), 0, "noeviction", 10**8, 512 * MiB)
    rate2 = primary(Target("region2", "rate-limiting", "false", "noeviction"), 0, "noeviction", 10**8, 512 * MiB)
    for t in (sessions1, rate1, rate2):
        t.add("redis_evicted_keys_total", "0x40")
    sessions1.add("redis_evicted_keys_total", "0+10x40")  # allkeys-lru may evict: no alert
    test = c.group("healthy fleet", [sessions1, sessions2, rate1, rate2])
    at = "30m"
    c.record(test, at, "valkey_connected_replicas", [
        (lbl("region1", "sessions", "primary"), 1), (lbl("region2", "sessions", "replica"), 0),
        (lbl("region1", "rate-limiting", "primary"), 0), (lbl("region2", "rate-limiting", "primary"), 0),
    ])  # fmt: skip
    # 100000 + 30 × 6000 written, 99000 + 30 × 6000 acknowledged.
    c.record(
        test, at, "valkey_replication_lag", [(lbl("region1", "sessions", "primary", replica="10.20.0.7:6379"), 1000)]
    )
    c.record(test, at, "valkey_used_memory", [
        (lbl("region1", "sessions", "primary"), 10**9), (lbl("region2", "sessions", "replica"), 9 * 10**8),
        (lbl("region1", "rate-limiting", "primary"), 10**8), (lbl("region2", "rate-limiting", "primary"), 10**8),
    ])  # fmt: skip
    c.record(test, at, "valkey_commands_processed_total", [
        (lbl("region1", "sessions", "primary"), 18000), (lbl("region2", "sessions", "replica"), 1800),
        (lbl("region1", "rate-limiting", "primary"), 18000), (lbl("region2", "rate-limiting", "primary"), 18000),
    ])  # fmt: skip
    c.record(test, at, "valkey_replica_link_up", [(lbl("region2", "sessions", "replica"), 1)])
    c.record(test, at, "valkey_replica_last_io_seconds", [(lbl("region2", "sessions", "replica"), 3)])
    c.record(test, at, 'valkey_replica_link_up{region="region1"}', [])  # a primary has no link to report
    for name in c.alerts:
        c.alert(test, at, name, [])


def troubled_fleet(c: Cases) -> None:
    """One instance per failure, plus near misses that must stay quiet."""
    ff1 = primary(Target("region1", "feature-flags"), replicas=0)  # DR primary, region 2 gone
    ff2 = replica(Target("region2", "feature-flags"), link="0x40", last_io="-1x40")
    orders1 = primary(Target("region1", "orders"), replicas=1)
    # 20 MiB written per minute, nothing acknowledged since the start; the last ACK ages by 60 s a minute.
    connected_replica(orders1, "10.20.0.9", f"0+{20 * MiB}x40", "0x40", "0+60x40")
    orders2 = replica(Target("region2", "orders"), link="1x40", last_io="45x40", role="replica")  # newer role name
    flappy2 = replica(Target("region2", "flappy"), link="1x13 0x26", last_io="2x13 -1x26")  # down from 14m
    cache1 = primary(Target("region1", "api-cache", "false"), 0, used=10**9, maxmemory=2**30)  # 93 % of maxmemory
    cache1.add("redis_evicted_keys_total", "0+100x40")  # allkeys-lru: evictions are its job
    rate1 = primary(Target("region1", "rate-limiting", "false", "noeviction"), 0, policy="allkeys-lru")  # drifted
    rate1.add("redis_evicted_keys_total", "0+5x40")
    # No dr or eviction_policy labels (pod labels missing): the running policy still tells.
    legacy1 = primary(Target("region1", "legacy", None, None), 0, policy="noeviction", used=5 * 10**9, maxmemory=0)
    legacy1.add("redis_evicted_keys_total", "0+5x40")
    down_server = Target("region1", "down-server").add("up", "1x40").add("redis_up", "0x40")
    down_exporter = Target("region1", "down-exporter").add("up", "0x40")
    targets = [ff1, ff2, orders1, orders2, flappy2, cache1, rate1, legacy1, down_server, down_exporter]
    test = c.group("troubled fleet", targets)

    at = "15m"
    c.alert(test, at, "ValkeyDown", [lbl("region1", "down-server"), lbl("region1", "down-exporter")])
    c.alert(test, at, "ValkeyReplicaLinkDown", [lbl("region2", "feature-flags", "replica")])  # flappy: only 1m
    c.alert(
        test,
        "17m",
        "ValkeyReplicaLinkDown",
        [lbl("region2", "feature-flags", "replica"), lbl("region2", "flappy", "replica")],
    )
    c.alert(test, at, "ValkeyReplicationLagBytes", [lbl("region1", "orders", "primary", replica="10.20.0.9:6379")])
    c.alert(
        test,
        at,
        "ValkeyReplicationLagSeconds",
        [lbl("region1", "orders", "primary"), lbl("region2", "orders", "replica")],
    )
    c.alert(test, at, "ValkeyNoReplicaConnected", [lbl("region1", "feature-flags", "primary")])
    c.alert(test, at, "ValkeyMemoryNearMaxmemory", [lbl("region1", "api-cache")])
    c.alert(
        test, at, "ValkeyEvictionsOnNoEvictionInstance", [lbl("region1", "rate-limiting"), lbl("region1", "legacy")]
    )
    # One minute in, every alert with a `for:` is still pending.
    for name in c.alerts:
        if name != "ValkeyEvictionsOnNoEvictionInstance":
            c.alert(test, "1m", name, [])

    c.record(
        test,
        at,
        "valkey_replication_lag",
        [(lbl("region1", "orders", "primary", replica="10.20.0.9:6379"), 15 * 20 * MiB)],
    )
    c.record(test, at, 'valkey_replication_lag{instance="feature-flags"}', [])
    c.record(test, at, "valkey_replica_link_up", [
        (lbl("region2", "feature-flags", "replica"), 0), (lbl("region2", "orders", "replica"), 1),
        (lbl("region2", "flappy", "replica"), 0),
    ])  # fmt: skip
    # -1 while the link is down is no measurement: absent, not -1.
    c.record(test, at, "valkey_replica_last_io_seconds", [(lbl("region2", "orders", "replica"), 45)])
    c.record(test, at, 'valkey_replica_last_io_seconds{instance="feature-flags"}', [])
    for metric in ("valkey_connected_replicas", "valkey_used_memory", "valkey_commands_processed_total"):
        c.record(test, at, f'{metric}{{instance="down-server"}}', [])  # Valkey unreachable: no values


@dataclass
class Promtool:
    rc: int
    output: str


def promtool(*args: str | Path) -> Promtool:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)
    return Promtool(done.returncode, done.stdout + done.stderr)


def write(tmp: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> Path:
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    test_file = tmp / "rules_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}))
    return test_file


def fenced_node(c: Cases) -> None:
    """Region 1's single primary restarted on an empty volume: fenced (render/scripts/fence.sh), a
    replica of fenced.invalid, as its exporter reports it (tests/test_fencing.py checks a real one)."""
    fenced = replica(Target("region1", "sessions"), link="0x40", last_io="-1x40", master_host="fenced.invalid")
    test = c.group("a fenced node", [fenced])
    c.alert(test, "1m", "ValkeyNodeFenced", [lbl("region1", "sessions")])


GiB = 1024 * MiB


def memory_cases() -> Cases:
    """The memory model's rules (render/memory_alerts.py): region 1's sessions group, one pod
    forking near its limit, one near it without a fork; api-cache forking well below its limit.
    cAdvisor's series as the kubelet labels them (``instance`` is the node, not ours)."""
    memory = {"sessions": MemoryShape(4 * GiB, 600 * MiB), "api-cache": MemoryShape(1536 * MiB, 100 * MiB)}
    c = Cases(AlertThresholds(), Topology(region="region1", namespace="databases", memory=memory))
    pods = [Target("region1", "sessions", extra={"pod": f"sessions-{n}"}) for n in range(2)]
    cache = Target("region1", "api-cache", "false", extra={"pod": "api-cache-0"})
    # sessions-0: a full sync's RDB child from minute 5 to 8, which copied 700 MiB (budget 600).
    pods[0].add("redis_rdb_bgsave_in_progress", "0x4 1x3 0x32").add("redis_aof_rewrite_in_progress", "0x40")
    pods[0].add("redis_rdb_last_cow_size_bytes", f"0x7 {700 * MiB}x32").add("redis_aof_last_cow_size_bytes", "0x40")
    pods[1].add("redis_rdb_bgsave_in_progress", "0x40").add("redis_aof_rewrite_in_progress", "0x40")
    pods[1].add("redis_rdb_last_cow_size_bytes", "0x40").add("redis_aof_last_cow_size_bytes", f"{500 * MiB}x40")
    cache.add("redis_rdb_bgsave_in_progress", "0x40").add("redis_aof_rewrite_in_progress", "0x4 1x3 0x32")
    # api-cache-0's AOF rewrite copied 150 MiB (budget 100): the aof half of the copy alert.
    cache.add("redis_rdb_last_cow_size_bytes", "0x40").add("redis_aof_last_cow_size_bytes", f"0x7 {150 * MiB}x32")
    test = c.group("memory during forks", [*pods, cache])

    def working_set(pod: str, values: str, container: str = "valkey", namespace: str = "databases") -> None:
        labels = {"job": "kubelet", "instance": "10.0.0.5:10250", "namespace": namespace, "pod": pod}
        labels |= {"container": container, "id": f"/kubepods/{pod}/{container}"}
        test["input_series"].append(
            {"series": selector("container_memory_working_set_bytes", labels), "values": values}
        )

    high = int(0.93 * 4 * GiB)
    working_set("sessions-0", f"{3 * GiB}x4 {high}x3 {3 * GiB}x32")
    working_set("sessions-1", f"{high}x40")  # near the limit, but no fork: ValkeyMemoryNearMaxmemory's case
    working_set("sessions-0", f"{5 * GiB}x40", container="metrics")  # another container of the pod
    working_set("sessions-0", f"{5 * GiB}x40", namespace="other")  # another namespace's sessions-0
    working_set("api-cache-0", f"{1024 * MiB}x40")  # 67 % of its limit during its AOF rewrite
    # While it forks, another container's and another namespace's api-cache-0 are above its limit.
    working_set("api-cache-0", f"{1500 * MiB}x40", container="metrics")
    working_set("api-cache-0", f"{1500 * MiB}x40", namespace="other")
    c.record(test, "6m", "valkey_memory_limit_bytes", [
        (lbl("region1", "api-cache"), 1536 * MiB), (lbl("region1", "sessions"), 4 * GiB),
    ])  # fmt: skip
    c.record(test, "6m", 'valkey_memory_limit_bytes{instance="orders"}', [])
    c.record(test, "6m", "valkey_fork_copy_budget_bytes", [
        (lbl("region1", "api-cache"), 100 * MiB), (lbl("region1", "sessions"), 600 * MiB),
    ])  # fmt: skip
    c.record(test, "6m", 'valkey_fork_copy_budget_bytes{instance="orders"}', [])
    c.alert(test, "3m", "ValkeyForkNearMemoryLimit", [])
    c.alert(test, "6m", "ValkeyForkNearMemoryLimit", [lbl("region1", "sessions", pod="sessions-0")])
    c.alert(test, "9m", "ValkeyForkNearMemoryLimit", [])
    c.alert(test, "6m", "ValkeyForkCopiedMoreThanSized", [])
    c.alert(test, "9m", "ValkeyForkCopiedMoreThanSized", [
        lbl("region1", "api-cache", pod="api-cache-0"), lbl("region1", "sessions", pod="sessions-0"),
    ])  # fmt: skip
    return c


@pytest.fixture(scope="module")
def cases() -> Iterator[Cases]:
    """The fleets of single pods, with the rules of a stack without groups."""
    c = Cases(AlertThresholds())
    healthy_fleet(c)
    troubled_fleet(c)
    fenced_node(c)
    yield c


@pytest.fixture(scope="module")
def group_cases() -> Iterator[list[Cases]]:
    """Each region's groups, with the rules of that region's stack (group_rules_test.py), and the
    memory rules."""
    yield [region1_groups(), region2_groups(), memory_cases()]


def test_rule_file_passes_promtool_check(tmp_path: Path, cases: Cases, group_cases: list[Cases]) -> None:
    for c in (cases, *group_cases):
        write(tmp_path, c.groups, [])
        result = promtool("check", "rules", tmp_path / "rules.yml")
        assert result.rc == 0, result.output
        found = re.search(r"SUCCESS: (\d+) rules found", result.output)
        assert found is not None, result.output
        assert int(found.group(1)) == sum(len(g["rules"]) for g in c.groups)


def test_every_rule_and_alert_is_tested_both_ways(cases: Cases, group_cases: list[Cases]) -> None:
    names = {r.get("record") or r.get("alert") for c in group_cases for g in c.groups for r in g["rules"]}
    assert sorted(names) == sorted(RECORDS + ALERTS)
    expected = {(r, s) for r in RECORDS for s in ("present", "absent")} | {
        (a, s) for a in ALERTS for s in ("firing", "not firing")
    }
    shown = cases.shown.union(*(c.shown for c in group_cases))
    assert expected - shown == set()


def test_promtool_unit_tests_pass(tmp_path: Path, cases: Cases, group_cases: list[Cases]) -> None:
    for c in (cases, *group_cases):
        result = promtool("test", "rules", write(tmp_path, c.groups, c.tests))
        assert result.rc == 0, result.output
        assert "SUCCESS" in result.output and "FAILED" not in result.output


def test_promtool_harness_catches_a_wrong_expectation(tmp_path: Path, cases: Cases) -> None:
    """The same tests with one expected value changed must fail: promtool really compares."""
    tests = yaml.safe_load(yaml.safe_dump(cases.tests))
    tests[0]["promql_expr_test"][1]["exp_samples"][0]["value"] = 999
    result = promtool("test", "rules", write(tmp_path, cases.groups, tests))
    assert result.rc != 0
    assert "FAILED" in result.output and "valkey_replication_lag" in result.output


@pytest.mark.parametrize(("threshold_mib", "fires"), [(64, False), (8, True)])
def test_lag_threshold_decides_firing(tmp_path: Path, threshold_mib: int, fires: bool) -> None:
    """A constant 10 MiB of lag: quiet under the default 64 MiB threshold, an alert under 8 MiB."""
    c = Cases(AlertThresholds(replication_lag_bytes=threshold_mib * MiB))
    t = primary(Target("region1", "sessions"), replicas=1)
    connected_replica(t, "10.20.0.7", f"{20 * MiB}x40", f"{10 * MiB}x40", "0x40")
    test = c.group("constant lag", [t])
    expected = [lbl("region1", "sessions", "primary", replica="10.20.0.7:6379")]
    c.alert(test, "10m", "ValkeyReplicationLagBytes", expected if fires else [])
    result = promtool("test", "rules", write(tmp_path, c.groups, c.tests))
    assert result.rc == 0, result.output


def test_thresholds_change_the_rules() -> None:
    custom = AlertThresholds(
        replication_lag_bytes=1234567, replication_lag_seconds=42, memory_ratio=0.75, link_down_for=30,
        replication_lag_for=90, no_replica_for=3600, memory_for=0, down_for=45, eviction_window=600,
    )  # fmt: skip
    default_alerts = {r["alert"]: r for r in rule_groups(AlertThresholds(), RUNBOOK)[1]["rules"]}
    alerts = {r["alert"]: r for r in rule_groups(custom, RUNBOOK)[1]["rules"]}
    assert alerts["ValkeyReplicationLagBytes"]["expr"] == "valkey_replication_lag > 1234567"
    assert default_alerts["ValkeyReplicationLagBytes"]["expr"] == f"valkey_replication_lag > {64 * MiB}"
    assert alerts["ValkeyReplicationLagSeconds"]["expr"].count("> 42") == 2
    assert alerts["ValkeyMemoryNearMaxmemory"]["expr"].endswith("> 0.75")
    assert alerts["ValkeyEvictionsOnNoEvictionInstance"]["expr"].count("[10m]") == 2
    fors = {name: alerts[name]["for"] for name in ALERTS if name in alerts}
    assert fors == {
        "ValkeyDown": "45s", "ValkeyReplicaLinkDown": "30s", "ValkeyReplicationLagBytes": "90s",
        "ValkeyReplicationLagSeconds": "90s", "ValkeyNoReplicaConnected": "1h", "ValkeyMemoryNearMaxmemory": "0s",
        "ValkeyEvictionsOnNoEvictionInstance": "0s", "ValkeyNodeFenced": "0s",
    }  # fmt: skip
    assert default_alerts["ValkeyReplicaLinkDown"]["for"] == "2m"
    assert "1234567" not in yaml.safe_dump(default_alerts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replication_lag_seconds": 10}, "replication_lag_seconds"),
        ({"memory_ratio": 1.0}, "memory_ratio"),
        ({"replication_lag_bytes": 0}, "replication_lag_bytes"),
        ({"link_down_for": -1}, "link_down_for"),
        ({"eviction_window": 0}, "eviction_window"),
    ],
)
def test_thresholds_are_validated(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertThresholds(**change)


def test_every_alert_links_its_runbook_anchor() -> None:
    for rule in rule_groups(AlertThresholds(), RUNBOOK + "#")[1]["rules"]:
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK}#alert-{rule['alert'].lower()}"
        assert runbook_anchor(rule["alert"]) == f"alert-{rule['alert'].lower()}"
        assert {"summary", "description"} <= rule["annotations"].keys()
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_a_group_of_three_pods_is_recorded_per_role_without_ambiguous_joins(tmp_path: Path) -> None:
    """A group: three exporters of one (region, instance), told apart by the operator's ``pod``
    label. Joined per pod, the recorded series aggregate the pods of one role; joined per
    instance, promtool would fail with "many-to-many matching not allowed"."""
    c = Cases(AlertThresholds())
    pods = [Target("region1", "sessions") for _ in range(3)]
    for n, t in enumerate(pods):
        t.extra = {"pod": f"sessions-{n}"}
    primary(pods[0], replicas=3)  # two members and region 2's head
    for member in ("sessions-1", "sessions-2"):
        connected_replica(pods[0], member, "5000+100x40", "5000+100x40", "0x40")
    for t in pods[1:]:
        replica(t, link="1x40", last_io="1x40")
    test = c.group("a group of three", pods)
    c.record(
        test,
        "10m",
        "valkey_connected_replicas",
        [(lbl("region1", "sessions", "primary"), 3), (lbl("region1", "sessions", "replica"), 0)],
    )
    c.record(test, "10m", "valkey_replica_link_up", [(lbl("region1", "sessions", "replica"), 1)])
    c.record(
        test,
        "10m",
        "valkey_replication_lag",
        [(lbl("region1", "sessions", "primary", replica=f"sessions-{n}:6379"), 0) for n in (1, 2)],
    )
    c.alert(test, "10m", "ValkeyNoReplicaConnected", [])
    result = promtool("test", "rules", write(tmp_path, c.groups, c.tests))
    assert result.rc == 0, result.output
