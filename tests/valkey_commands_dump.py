"""What a real Valkey server says it knows: every command and subcommand (``COMMAND LIST``), every
ACL category (``ACL CAT``) and each category's members. The program refuses a ``deniedCommands``
entry that a supported Valkey would not know, from ``components/config/valkey_commands.json``, which this
module writes and ``tests/test_valkey_commands.py`` compares with the live servers.

    python tests/valkey_commands_dump.py      # rewrite components/config/valkey_commands.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from valkey_process import BUILDS, Server, free_port

DATA = Path(__file__).resolve().parents[1] / "components" / "config" / "valkey_commands.json"
"""What components/config/valkey_commands.py reads."""


def dump(binary: Path) -> dict[str, Any]:
    """Commands and categories of a stock server of this build."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "valkey.conf"
        port = free_port()
        config.write_text(f'port {port}\nsave ""\nappendonly no\ndir "{directory}"\n')
        server = Server(config, port, None, binary=binary)
        try:
            client = server.client()
            commands = sorted(client.execute_command("COMMAND LIST"))
            categories = {
                category: sorted(client.execute_command("ACL CAT", category))
                for category in sorted(client.execute_command("ACL CAT"))
            }
        finally:
            server.stop()
    return {"commands": commands, "categories": categories}


def dump_all() -> dict[str, Any]:
    return {version: dump(binary) for version, binary in sorted(BUILDS.items())}


if __name__ == "__main__":
    DATA.write_text(json.dumps(dump_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DATA}")
