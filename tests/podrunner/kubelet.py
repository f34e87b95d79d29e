"""The kubelet's per-container bookkeeping: the crash-loop back-off and the probe results.

Back-off, as the kubelet computes it (pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff on
k8s.io/client-go/util/flowcontrol/backoff.go, with pkg/kubelet/kubelet.go's backOffPeriod = 10 s and
MaxContainerBackOff = 300 s):

- a container that exited is started again unless ``now - finishedAt < backoff`` of its entry;
- when it is started, ``Next(finishedAt)``: no entry, or ``finishedAt - lastUpdate > 2 * max``
  (it ran 10 minutes since the last restart): the entry is reset to the initial 10 s; otherwise the
  back-off doubles, capped at 5 minutes; ``lastUpdate`` is now.

So the first restart is immediate, the second waits 10 s after the exit, then 20 s, 40 s ... 300 s,
and a container that ran 10 minutes before crashing restarts at once again.

Readiness (pkg/kubelet/prober/worker.go): a container's result starts as not ready; liveness and
readiness probes run only once the startup probe (if any) succeeded; each probe runs every
periodSeconds after initialDelaySeconds (counted from the container's start); the result flips to
ready after successThreshold successes in a row and back after failureThreshold failures in a row. A
container that is not running is not ready. A restarted container starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .podspec import ContainerPlan

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0


@dataclass
class Backoff:
    initial: float = BACKOFF_INITIAL
    maximum: float = BACKOFF_MAX
    duration: float | None = None
    """The entry's current back-off; None: no entry (never restarted, or garbage-collected)."""
    last_update: float = 0.0

    def _expired(self, event: float) -> bool:
        return event - self.last_update > 2 * self.maximum

    def in_backoff_since(self, event: float, now: float) -> bool:
        if self.duration is None or self._expired(event):
            return False
        return now - event < self.duration

    def remaining(self, event: float, now: float) -> float:
        """Seconds until a container that exited at ``event`` may be started again."""
        if not self.in_backoff_since(event, now):
            return 0.0
        assert self.duration is not None
        return self.duration - (now - event)

    def next(self, event: float, now: float) -> None:
        if self.duration is None or self._expired(event):
            self.duration = self.initial
        else:
            self.duration = min(self.duration * 2, self.maximum)
        self.last_update = now


@dataclass
class ContainerState:
    backoff: Backoff = field(default_factory=Backoff)
    restarts: int = 0
    finished_at: float | None = None
    """When the runner saw the current process exited (monotonic); None while it runs."""
    last_exit_code: int | None = None
    started: bool = False
    """The startup probe passed (or there is none)."""
    ready: bool = False
    successes: int = 0
    failures: int = 0
    next_probe: float = 0.0

    def on_start(self, started_at: float, plan: ContainerPlan) -> None:
        startup, readiness = plan.probes.get("startup"), plan.probes.get("readiness")
        self.finished_at = None
        self.started = startup is None
        self.ready = False
        self.successes = self.failures = 0
        first = startup if startup is not None else readiness
        self.next_probe = started_at + (first.initial_delay if first is not None else 0.0)
