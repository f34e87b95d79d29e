"""No passwords in a Valkey pod spec: not on a command line (argv, a script, a probe, a hook),
not as a plain env value. Messages name where a password is, never quote it: they end up in CI
logs and pull-request comments."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pods import all_containers, argv, program_of, simple_commands, valkey_pod_spec
from resource_inputs import as_list, describe, dig

CLIENTS = {"valkey-cli", "redis-cli"}
PASSWORD_FLAG_WORDS = {
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PASSPHRASE",
    "REQUIREPASS",
    "MASTERAUTH",
    "AUTH",
    "SECRET",
    "TOKEN",
}
"""Last word of an option that takes a password: --requirepass, --masterauth, --redis.password..."""
CLIENT_PASSWORD_FLAGS = {"-a"}
_URI_WITH_PASSWORD = re.compile(r"\b(?:redis|rediss|valkey|valkeys)://[^\s:@/]*:[^\s@/]+@", re.IGNORECASE)
_SHELL_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(`])([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_CONF_PASSWORD = re.compile(r"(?<![\w-])(requirepass|masterauth)[ \t]+(\S+)", re.IGNORECASE)
_ACL_SETUSER = re.compile(r"\bacl\s+setuser\b([^;&|\n]*)", re.IGNORECASE)
_NOT_LITERAL_START = set("$\\|;&<>()`")


def password_like(name: str) -> bool:
    """Environment/shell variable names that hold a password or token, not a path to one or a
    switch: VALKEY_PASSWORD, REDISCLI_AUTH, MASTERAUTH yes; VALKEY_PASSWORD_FILE, ALLOW_EMPTY_PASSWORD no."""
    words = [w for w in re.split(r"[_\-.]", name.upper()) if w]
    if not words or words[-1] in ("FILE", "PATH", "DIR", "FILENAME", "NAME", "REF") or words[0] in ("ALLOW", "USE"):
        return False
    return any(
        "PASS" in w or "SECRET" in w or w.endswith("AUTH") or w in ("TOKEN", "CREDENTIAL", "CREDENTIALS") for w in words
    )


def password_flag(word: str) -> str | None:
    """The option name if ``word`` is an option that takes a password (``--redis.password=...``,
    ``--requirepass``), not a path to one (``--redis.password-file``) or a switch (``--no-auth-warning``)."""
    if not word.startswith("-"):
        return None
    flag = word.split("=", 1)[0]
    words = [w for w in re.split(r"[_\-.]", flag.upper()) if w]
    return flag if words and words[-1] in PASSWORD_FLAG_WORDS else None


def _literal(value: str) -> bool:
    """A value written out in the manifest, not a reference ($VAR, $(cat file)) or a switch."""
    stripped = value.lstrip("\"'")
    if not stripped or stripped[0] in _NOT_LITERAL_START:
        return False
    return stripped.rstrip("\"';").lower() not in ("", "yes", "no", "true", "false", "0", "1")


def command_line_passwords(container: Mapping[str, Any]) -> list[str]:
    """Why a container's command line (or a probe's or hook's) carries a password; empty if not."""
    found: list[str] = []
    commands = {"command/args": container}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        commands[probe] = {"command": dig(container, probe, "exec", "command")}
    for hook in ("postStart", "preStop"):
        commands[f"lifecycle.{hook}"] = {"command": dig(container, "lifecycle", hook, "exec", "command")}
    for where, source in commands.items():
        for words in simple_commands(source):
            program = program_of(words)
            for word in words:
                flag = password_flag(word) or (word if program in CLIENTS and word in CLIENT_PASSWORD_FLAGS else None)
                if flag:
                    found.append(f"{where} passes {flag}")
        found += [f"{where} {reason}" for reason in _text_passwords(" ".join(argv(source)))]
    return list(dict.fromkeys(found))


def _text_passwords(text: str) -> list[str]:
    """Why a command line's text, read as shell and config syntax, holds a password."""
    found = []
    if _URI_WITH_PASSWORD.search(text):
        found.append("holds a URI with a password")
    for name, value in _SHELL_ASSIGNMENT.findall(text):
        if password_like(name) and _literal(value):
            found.append(f"sets {name} to a literal value")
    for directive, value in _CONF_PASSWORD.findall(text):
        if _literal(value):
            found.append(f"writes {directive.lower()} with a literal value")
    for rules in _ACL_SETUSER.findall(text):
        if any(re.match(r"^['\"]?>[^\s>&/]", rule) for rule in rules.split()):
            found.append("sets an ACL password with ACL SETUSER")
    return found


def check_no_passwords(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = valkey_pod_spec(resource_type, props)
    if spec is None:
        return []
    what = describe(resource_type, props, name)
    messages = []
    for container in all_containers(spec):
        cname = container.get("name")
        for reason in command_line_passwords(container):
            messages.append(
                f"{what}: container '{cname}' {reason}: a password on a command line shows in "
                "/proc/<pid>/cmdline and in the manifest; read it from a file mounted from a Secret"
            )
        for env in as_list(container.get("env")):
            env_name, value = env.get("name"), env.get("value")
            if not isinstance(env_name, str) or not isinstance(value, str):
                continue
            if (password_like(env_name) and _literal(value)) or _URI_WITH_PASSWORD.search(value):
                messages.append(
                    f"{what}: container '{cname}' env {env_name} holds a password as a plain value; "
                    "use valueFrom.secretKeyRef"
                )
    return messages
