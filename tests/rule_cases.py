"""Input series shaped like the exporter's (Debian's 1.45 and the pinned image name them alike),
labelled the way the ServiceMonitor labels them, and a ledger of promtool test groups: what
tests/test_monitoring_rules.py and tests/group_fleets.py build their cases from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from components.config.models import AlertThresholds
from components.render.alerts import Topology, rule_groups

RUNBOOK = "https://example.com/valkey/README.md"
MiB = 1024**2


@dataclass
class Target:
    """One exporter sidecar as Prometheus sees it after the ServiceMonitor's relabelings."""

    region: str
    instance: str
    dr: str | None = "true"
    eviction_policy: str | None = "allkeys-lru"
    series: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    """Labels on every series of the target, e.g. the operator's ``pod``."""
    job: str = "valkey"

    def labels(self, **extra: str) -> dict[str, str]:
        base = {"job": self.job, "region": self.region, "instance": self.instance, "namespace": "databases"}
        base |= self.extra
        for name in ("dr", "eviction_policy"):
            if getattr(self, name) is not None:
                base[name] = getattr(self, name)
        return {**base, **extra}

    def add(self, metric: str, values: str, **extra: str) -> Target:
        self.series.append((metric, self.labels(**extra), values))
        return self


def selector(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def server(t: Target, role: str, policy: str, used: int, maxmemory: int) -> Target:
    """A reachable Valkey: the series every scrape of a healthy exporter has, for 40 minutes."""
    n = "x40"
    t.add("up", f"1{n}").add("redis_up", f"1{n}")
    t.add("redis_instance_info", f"1{n}", role=role, maxmemory_policy=policy, redis_version="7.2.4", redis_mode="")
    return t.add("redis_memory_used_bytes", f"{used}{n}").add("redis_memory_max_bytes", f"{maxmemory}{n}")


def primary(t: Target, replicas: int, policy: str = "allkeys-lru", used: int = 10**9, maxmemory: int = 2**31) -> Target:
    server(t, "master", policy, used, maxmemory)
    return t.add("redis_connected_slaves", f"{replicas}x40").add("redis_commands_processed_total", "0+600x40")


def replica(
    t: Target, link: str, last_io: str, role: str = "slave", master_host: str = "sessions.region1.example.com"
) -> Target:
    server(t, role, "allkeys-lru", 9 * 10**8, 2**31).add("redis_connected_slaves", "0x40")
    t.add("redis_commands_processed_total", "0+60x40")
    t.add("redis_slave_info", "1x40", master_host=master_host, master_port="6379", read_only="1")
    t.add("redis_master_link_up", link, master_host=master_host, master_port="6379")
    return t.add("redis_master_last_io_seconds_ago", last_io, master_host=master_host, master_port="6379")


def connected_replica(t: Target, ip: str, primary_offset: str, replica_offset: str, ack_age: str) -> Target:
    slave = {"slave_ip": ip, "slave_port": "6379", "slave_state": "online"}
    t.add("redis_master_repl_offset", primary_offset)
    return t.add("redis_connected_slave_offset_bytes", replica_offset, **slave).add(
        "redis_connected_slave_lag_seconds", ack_age, **slave
    )


class Cases:
    """promtool test groups, and a ledger of what they show, so coverage is checked, not assumed."""

    def __init__(self, thresholds: AlertThresholds, topology: Topology | None = None) -> None:
        self.groups = rule_groups(thresholds, RUNBOOK, topology)
        self.alerts = {r["alert"]: r for g in self.groups for r in g["rules"] if "alert" in r}
        self.tests: list[dict[str, Any]] = []
        self.shown: set[tuple[str, str]] = set()

    def group(self, name: str, targets: list[Target]) -> dict[str, Any]:
        series = [{"series": selector(m, lbl), "values": v} for t in targets for m, lbl, v in t.series]
        test: dict[str, Any] = {
            "name": name, "interval": "1m", "input_series": series, "alert_rule_test": [], "promql_expr_test": []
        }  # fmt: skip
        self.tests.append(test)
        return test

    def record(self, test: dict[str, Any], at: str, expr: str, samples: list[tuple[dict[str, str], float]]) -> None:
        metric = expr.split("{", maxsplit=1)[0]
        self.shown.add((metric, "present" if samples else "absent"))
        exp = [{"labels": selector(metric, lbl), "value": value} for lbl, value in samples]
        test["promql_expr_test"].append({"expr": expr, "eval_time": at, "exp_samples": exp})

    def alert(self, test: dict[str, Any], at: str, name: str, firing: list[dict[str, str]]) -> None:
        self.shown.add((name, "firing" if firing else "not firing"))
        rule = self.alerts[name]
        exp = [
            {"exp_labels": {**lbl, **rule["labels"]}, "exp_annotations": render(rule["annotations"], lbl)}
            for lbl in firing
        ]
        test["alert_rule_test"].append({"eval_time": at, "alertname": name, "exp_alerts": exp})


def render(annotations: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    """What Prometheus makes of the annotations: they template nothing but ``$labels``."""
    return {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v) for k, v in annotations.items()}


def lbl(region: str, instance: str, role: str | None = None, **extra: str) -> dict[str, str]:
    out = {"region": region, "instance": instance, **extra}
    if role is not None:
        out["role"] = role
    return out
