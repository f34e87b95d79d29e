"""The instance's marker: a ConfigMap that exists once the instance's first rollout was Ready.

Its pods read it as an optional variable at each container start (DATA_EXPECTED, specs/pod.py):
before it exists, a node on an empty volume is a first start and bootstraps; once it exists, a
node that would be a primary on an empty volume lost its data, and is fenced instead of being
copied from (render/scripts/fence.sh). The volume itself cannot tell the two apart: a lost volume
and a new one look the same.

Pulumi creates it after the StatefulSet's await (components/valkey_server.py: it depends on the
StatefulSet), so it appears only once every pod was Ready, and it never changes afterwards. It
goes away only with the stack (``pulumi destroy``); protected like the StatefulSet.
"""

from __future__ import annotations

KEY = "expected"
"""Its one key, the value DATA_EXPECTED gets."""
VALUE = "yes"


def data() -> dict[str, str]:
    return {KEY: VALUE}
