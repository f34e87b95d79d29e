"""Components used on their own, outside the program: what they promise to their callers."""

from __future__ import annotations

from harness import run_with_mocks

from components.credentials import Credentials, CredentialsArgs


def test_generated_passwords_are_pulumi_secrets() -> None:
    async def build() -> list[tuple[bool, str]]:
        creds = Credentials(
            "cache", CredentialsArgs(instance="cache", namespace="apps", secret_name="cache-credentials")
        )
        outputs = (creds.client_password, creds.replication_password, creds.probe_password)
        return [(await o.is_secret(), await o.future()) for o in outputs]

    results = run_with_mocks(build)
    assert [secret for secret, _ in results] == [True, True, True]
    passwords = [value for _, value in results]
    assert len(set(passwords)) == 3 and all(len(p) == 32 for p in passwords)
