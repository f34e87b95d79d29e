"""Components used on their own, outside the program: what they promise to their callers."""

from __future__ import annotations

from typing import Any

from harness import run_with_mocks

from components.config.security import PasswordRotation, Rotation
from components.credentials import Credentials, CredentialsArgs


def credentials(rotation: PasswordRotation | None = None) -> dict[str, Any]:
    async def build() -> dict[str, Any]:
        creds = Credentials(
            "cache",
            CredentialsArgs(
                instance="cache",
                namespace="apps",
                rotation=rotation or PasswordRotation(),
            ),
        )
        outputs = {
            "client": creds.client.current,
            "client-accepted": creds.client.accepted,
            "replication": creds.replication.current,
            "replication-accepted": creds.replication.accepted,
            "probe": creds.probe_password,
            "reloader": creds.reloader_password,
            "admin": creds.admin_password,
        }
        return {name: (await o.is_secret(), await o.future()) for name, o in outputs.items()}

    return run_with_mocks(build)


def test_generated_passwords_are_pulumi_secrets() -> None:
    results = credentials()
    assert {name: secret for name, (secret, _) in results.items()} == dict.fromkeys(results, True)
    singles = [value for name, (_, value) in results.items() if "accepted" not in name]
    assert len(set(singles)) == 5 and all(len(p) == 32 for p in singles)
    assert results["client-accepted"][1] == [results["client"][1]]


def test_a_rotation_accepts_the_previous_password_until_told_otherwise() -> None:
    before = credentials()
    during = credentials(PasswordRotation(client=Rotation(generation=2, accept_previous=True)))
    after = credentials(PasswordRotation(client=Rotation(generation=2, accept_previous=False)))
    old, new = before["client"][1], during["client"][1]
    assert new != old
    assert during["client-accepted"][1] == [new, old]
    assert after["client"][1] == new and after["client-accepted"][1] == [new]
    # Other users are untouched by the client's rotation.
    assert during["replication"][1] == before["replication"][1]
    assert during["probe"][1] == before["probe"][1]
