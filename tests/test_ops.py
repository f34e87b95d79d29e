"""The operators' commands' own checks, before they touch a server (ops/)."""

from __future__ import annotations

import pytest

from ops import switchover

ARGS = ["--old", "10.0.0.1:6379", "--new", "10.0.0.2:6379", "--new-external", "sessions.region2.example.com:6379"]


def test_passwords_come_from_the_environment_never_from_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OLD_ADMIN_PASSWORD", "NEW_ADMIN_PASSWORD", "NEW_REPLICATION_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stopped:
        switchover.main(ARGS)
    assert stopped.value.code == 2
    assert "OLD_ADMIN_PASSWORD is not set" in capsys.readouterr().err
    # What a failed lookup in the runbook's pipeline leaves (jq prints null) counts as not set.
    for name in ("OLD_ADMIN_PASSWORD", "NEW_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("NEW_REPLICATION_PASSWORD", "null")
    with pytest.raises(SystemExit):
        switchover.main(ARGS)
    assert "NEW_REPLICATION_PASSWORD is not set" in capsys.readouterr().err
    monkeypatch.setenv("NEW_REPLICATION_PASSWORD", "x")
    with pytest.raises(SystemExit) as stopped:
        switchover.main([*ARGS, "--password", "x"])
    assert stopped.value.code == 2 and "unrecognized arguments: --password" in capsys.readouterr().err


def test_an_endpoint_is_host_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        switchover.main(["--old", "10.0.0.1", "--new", "10.0.0.2:6379", "--new-external", "x:6379"])
    assert "HOST:PORT" in capsys.readouterr().err


def test_an_unreachable_primary_changes_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OLD_ADMIN_PASSWORD", "NEW_ADMIN_PASSWORD", "NEW_REPLICATION_PASSWORD"):
        monkeypatch.setenv(name, "secret-from-the-environment")
    closed = ["--old", "127.0.0.1:9", "--new", "127.0.0.1:9", "--new-external", "x:6379"]
    assert switchover.main(closed) == 1
    err = capsys.readouterr().err
    assert "switchover: failed" in err and "nothing changed" in err
    assert "secret-from-the-environment" not in err


def test_a_pause_too_short_to_wait_in_is_refused_before_anything_is_touched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OLD_ADMIN_PASSWORD", "NEW_ADMIN_PASSWORD", "NEW_REPLICATION_PASSWORD"):
        monkeypatch.setenv(name, "x")
    assert switchover.main([*ARGS, "--pause-timeout", "0.5"]) == 1
    assert "too short" in capsys.readouterr().err
