"""Entry point of the policy pack: the Pulumi CLI runs this file (``--policy-pack policy``).

``PolicyPack`` starts the analyzer's gRPC server and blocks, so nothing may import this module;
the tests import ``valkey_policies`` instead.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from valkey_policies import POLICIES

PolicyPack(
    name="valkey-policies",
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Invariants of Valkey workloads on any stack: no passwords in pod specs, pinned images, "
    "memory limits, restricted security contexts, durable DR primaries.",
)
