"""The rendered manifests of both stacks, kept under tests/snapshots/ so that a pull request shows
every manifest change in its diff. After an intended change, update them with

    python -m offline --out tests/snapshots
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from harness import ROOT, Rendered

from offline.__main__ import REDACTED, main

SNAPSHOTS = ROOT / "tests" / "snapshots"


def files(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*.yaml"))}


def test_rendered_manifests_match_the_snapshots(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    fresh, kept = files(tmp_path), files(SNAPSHOTS)
    assert sorted(fresh) == sorted(kept), "objects added or removed: run python -m offline --out tests/snapshots"
    changed = {
        name: "".join(difflib.unified_diff(kept[name].splitlines(True), fresh[name].splitlines(True), name, name))
        for name in fresh
        if fresh[name] != kept[name]
    }
    assert not changed, "manifests changed (python -m offline --out tests/snapshots):\n" + "\n".join(changed.values())


def test_snapshots_hold_no_generated_secret(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    generated = set(r1.passwords) | set(r2.passwords)
    assert len(generated) > 20  # every RandomPassword of both stacks
    for name, text in files(SNAPSHOTS).items():
        if ".secret." in name:
            assert "password: " + REDACTED in text or "-config.yaml" in name, name
        # A replica's masterauth is only ever in its own two keys, each redacted whole.
        for line in re.findall(r"^\s*(?:masterauth|primaryauth) .*$", text, flags=re.MULTILINE):
            raise AssertionError(f"{name}: {line.strip()}")
        for key in ("masterauth-password", "masterauth.conf"):
            for line in re.findall(rf"^\s*{re.escape(key)}:.*$", text, flags=re.MULTILINE):
                assert line.strip() == f"{key}: {REDACTED}", name
        # No password the mock engine generated for either stack survives the redaction.
        leaked = [password for password in generated if password in text]
        assert not leaked, (name, leaked)
    replica_config = files(SNAPSHOTS)["region2/databases.secret.sessions-config.yaml"]
    assert f"masterauth-password: {REDACTED}" in replica_config  # the check above sees the keys
