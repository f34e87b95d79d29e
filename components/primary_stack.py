"""The primary region's stack outputs, read by the DR region through a StackReference."""

from __future__ import annotations

from typing import Any

import pulumi

from .config import Instance
from .outputs import INSTANCES, REPLICATION_CREDENTIALS
from .valkey_conf import Upstream


class PrimaryStack:
    """Where each DR instance of the primary region is reached, and the replication login."""

    def __init__(self, stack_name: str, opts: pulumi.ResourceOptions | None = None):
        self.stack_name = stack_name
        self.reference = pulumi.StackReference("primary-stack", stack_name=stack_name, opts=opts)
        self._instances = self.reference.require_output(INSTANCES)
        self._credentials = self.reference.require_output(REPLICATION_CREDENTIALS)

    def upstream(self, name: str, settings: Instance) -> pulumi.Output[Upstream]:
        """The replicaof target for instance ``name``; fails the run if the primary stack does not
        export it as a DR primary, or if this replica could not hold the primary's dataset."""
        return pulumi.Output.secret(
            pulumi.Output.all(self._instances, self._credentials).apply(
                lambda v: self._upstream(name, settings, v[0], v[1])
            )
        )

    def _upstream(self, name: str, settings: Instance, instances: dict[str, Any], credentials: dict[str, Any]) -> Upstream:
        where = f"instance {name!r} of primary stack {self.stack_name}"
        primary = instances.get(name)
        if primary is None or name not in credentials:
            raise pulumi.RunError(
                f"valkey:instances.{name}: dr is true here, but {where} is not a DR instance "
                f"(it exports DR instances {sorted(credentials)}); set dr: false or add it there"
            )
        if not primary.get("externalHost"):
            raise pulumi.RunError(f"{where} has no externalHost output: it is not a primary yet")
        if settings.maxmemory < primary["maxmemoryBytes"]:
            raise pulumi.RunError(
                f"valkey:instances.{name}.maxmemory: given {int(settings.maxmemory)} bytes; accepted: at least "
                f"the primary's {int(primary['maxmemoryBytes'])} bytes (a replica does not evict, it would run out)"
            )
        login = credentials[name]
        return Upstream(
            host=primary["externalHost"],
            # Numbers come back from state as floats.
            port=int(primary["port"]),
            username=login["username"],
            password=login["password"],
        )
