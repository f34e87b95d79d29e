"""5. Program evaluation: the time to run ``__main__.py`` for each stack under Pulumi's mock engine.

The stacks as deployed: ``Pulumi.region1.yaml`` / ``Pulumi.region2.yaml`` unchanged (TLS, monitoring,
four instances); region 2's StackReference answered with region 1's rendered exports. Baseline: the
same stack files with one instance (``sessions``) in both regions.

- cold: a fresh ``python -c`` process that imports the harness (Pulumi SDK, pulumi-kubernetes) and
  renders once; wall time of the whole process, and the render call inside it;
- warm: in this process, the median of repeated renders after a first one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

from bench import ROOT, TESTS
from bench.common import PRIMARY_STACK, Results, median, stack_instances

COLD = """
import json, sys, time
started = time.perf_counter()
sys.path[:0] = [{root!r}, {tests!r}]
import harness
imported = time.perf_counter()
config = json.loads({config!r})
references = None
if {reference!r}:
    data = json.load(open({reference!r}))
    references = {{{primary!r}: harness.Rendered("region1", {{}}, data["exports"], set(data["secret"]))}}
t = time.perf_counter()
harness.render({stack!r}, config, references=references)
done = time.perf_counter()
print(json.dumps({{"import": imported - started, "render": done - t}}))
"""


def cold(stack: str, config: dict[str, Any], reference: str) -> dict[str, float]:
    code = COLD.format(
        root=str(ROOT),
        tests=str(TESTS),
        config=json.dumps(config),
        reference=reference if stack == "region2" else "",
        primary=PRIMARY_STACK,
        stack=stack,
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cold render of {stack} failed: {done.stderr[-2000:]}")
    return {"wall": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def warm(stack: str, config: dict[str, Any], r1: harness.Rendered | None, repeats: int) -> list[float]:
    times = []
    references = {PRIMARY_STACK: r1} if r1 is not None else None
    for _ in range(repeats + 1):
        t = time.perf_counter()
        harness.render(stack, config, references=references)
        times.append(time.perf_counter() - t)
    return times[1:]


def measure(results: Results, cold_repeats: int = 3, warm_repeats: int = 5) -> None:
    configs = {"stack files": {}, "one instance": {"instances": {"sessions": stack_instances()["sessions"]}}}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        for label, config in configs.items():
            r1 = harness.render("region1", config)
            reference = Path(tmp) / f"{label.replace(' ', '-')}.json"
            reference.write_text(json.dumps({"exports": r1.exports, "secret": sorted(r1.secret_exports)}))
            n_resources = {"region1": len(r1.resources)}
            for stack in ("region1", "region2"):
                colds = [cold(stack, config, str(reference)) for _ in range(cold_repeats)]
                warms = warm(stack, config, r1 if stack == "region2" else None, warm_repeats)
                if stack == "region2":
                    r2 = harness.render(stack, config, references={PRIMARY_STACK: r1})
                    n_resources["region2"] = len(r2.resources)
                out[f"{label} {stack}"] = {
                    "cold_wall": [c["wall"] for c in colds],
                    "cold_import": [c["import"] for c in colds],
                    "cold_render": [c["render"] for c in colds],
                    "warm": warms,
                    "resources": n_resources[stack],
                }
    results.raw["evaluation"] = out
    for stack in ("region1", "region2"):
        got, base = out[f"stack files {stack}"], out[f"one instance {stack}"]
        for kind, key in (("cold process", "cold_wall"), ("cold render call", "cold_render"), ("warm", "warm")):
            results.check(
                "5 program evaluation",
                f"{stack} ({got['resources']} resources): {kind}, s (median)",
                f"{median(got[key]):.2f} [{min(got[key]):.2f}–{max(got[key]):.2f}]",
                f"{median(base[key]):.2f} one instance ({base['resources']} resources)",
                "< 2 s",
                ok=median(got[key]) < 2.0,
            )
    imports = out["stack files region1"]["cold_import"]
    results.note(
        f"Evaluation: cold = fresh `python -c` (interpreter start, `import harness` — Pulumi SDK and "
        f"pulumi-kubernetes, {median(imports):.2f} s of it — and one render), {cold_repeats} runs; warm = "
        f"{warm_repeats} renders in-process after a first one. Stack files unchanged (TLS, monitoring on)."
    )
