"""Reads the ``valkey:`` stack configuration and validates it before any resource exists.

Any problem ends the program with one ``pulumi.RunError`` that lists every bad key, the value
given and what is accepted. The CLI prints a RunError without a traceback.
"""

from __future__ import annotations

import json
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import BaseModel, TypeAdapter, ValidationError

from .checks import cross_checks
from .models import StackConfig
from .names import DnsLabel
from .problems import PROJECT, Problem, format_problems, not_shown


def raw_stack_config(project: str = PROJECT) -> dict[str, Any]:
    """All ``<project>:*`` keys the engine passed to this run, structured values decoded.

    Pulumi's Config API only answers for keys you ask for by name; listing them all is what lets
    a misspelt top-level key be reported instead of silently ignored.
    """
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{project}:"
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
        if not full_key.startswith(prefix):
            continue
        raw[full_key[len(prefix) :]] = _decode(value)
    return raw


def secret_keys(project: str = PROJECT) -> frozenset[str]:
    """Top-level keys the engine marked secret (set with ``pulumi config set --secret``)."""
    prefix = f"{project}:"
    keys = {
        k
        for k in {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
        if runtime_config.is_config_secret(k)
    }
    keys |= set(runtime_config.get_config_secret_keys_env())
    return frozenset(key[len(prefix) :] for key in keys if key.startswith(prefix))


def _decode(value: Any) -> Any:
    """Structured config (objects, lists) reaches a program as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:  # JSONDecodeError, and integers past Python's digit limit
            return value  # reported by the model: "Input should be a valid dictionary"
    return value


# Values never shown in a message, secret-marked or not: a kubeconfig holds credentials, and a CA
# bundle that is refused may be refused for holding a private key.
ALWAYS_HIDDEN = ("kubeconfig", "tls.caBundle")


def parse_stack_config(
    raw: dict[str, Any], stack: str, secret: frozenset[str] = frozenset(), qualified: str | None = None
) -> tuple[StackConfig | None, list[Problem]]:
    """Validate raw config; return the model, or the problems that prevent building one. The values
    of ``secret`` keys, of unknown keys and of ``ALWAYS_HIDDEN`` ones never appear in a problem.
    ``qualified``: this stack's <organization>/<project>/<stack>, where known."""
    # Pulumi.yaml declares optional keys with the default "" (a declared key without a default
    # would be required): "" means not set.
    optional = {f.alias for f in StackConfig.model_fields.values() if f.default is None}
    raw = {key: value for key, value in raw.items() if not (key in optional and value == "")}
    try:
        cfg = StackConfig.model_validate(raw)
    except ValidationError as error:
        return None, [_problem(e, secret) for e in error.errors(include_url=False)]
    if cfg.region is None:
        try:
            TypeAdapter(DnsLabel).validate_python(stack)
        except ValidationError:
            return None, [Problem("region", None, f"a DNS label; the default, the stack name {stack!r}, is not one")]
        cfg = cfg.model_copy(update={"region": stack})
    problems = cross_checks(cfg, qualified or stack)
    return (None if problems else cfg), problems


def load_stack_config(project: str = PROJECT) -> StackConfig:
    """Config of the running stack, or a RunError naming every bad key."""
    stack = pulumi.get_stack()
    organization = pulumi.get_organization()
    qualified = f"{organization}/{pulumi.get_project()}/{stack}" if organization else None
    cfg, problems = parse_stack_config(raw_stack_config(project), stack, secret_keys(project), qualified)
    if cfg is None:
        raise pulumi.RunError(format_problems(problems, stack, project))
    return cfg


def _problem(error: Any, secret: frozenset[str]) -> Problem:
    # pydantic marks a bad dict key with a "[key]" step after the key itself: report it at the map
    # ("monitoring.labels: given 'release prometheus'"), not as a path through the bad key.
    loc = tuple(error["loc"])
    if loc[-1:] == ("[key]",):
        loc = loc[:-2]
    key = ".".join(str(part) for part in loc)
    given = error.get("input")
    hide = str(loc[0]) in secret or any(key == k or key.startswith(f"{k}.") for k in ALWAYS_HIDDEN)
    if error["type"] == "extra_forbidden":
        # A misspelt key may be a secret one (kubeConfig): its name is what helps, not its value.
        fields = _fields_at(StackConfig, loc[:-1])
        return Problem(key, not_shown(given), f"not a known key here; known keys: {', '.join(fields)}")
    message = error["msg"]
    if error["type"] == "missing":
        message = "a value (this key is required)"
    return Problem(key, not_shown(given) if hide and given is not None else given, message)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """camelCase field names of the model found by walking loc through fields, dicts and lists."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(f for n, f in current.model_fields.items() if part in (f.alias, n))
            current = _unwrap(field.annotation)
        elif get_origin(current) in (dict, list):
            current = _unwrap(get_args(current)[-1])  # a dict's value type, a list's item type
    assert isinstance(current, type) and issubclass(current, BaseModel)
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X, so the walk reaches the model inside."""
    if get_origin(annotation) in (Union, UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return inner
    return annotation
