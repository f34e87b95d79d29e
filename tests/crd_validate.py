"""Strict validation of the custom resources this program creates, against the real CRD schemas.

kubernetes-validate has schemas for built-in kinds only. The ``openAPIV3Schema`` of each custom
resource kind we create is kept in ``crd_schemas/`` (copied from the upstream CRD; see
``crd_schemas/SOURCES.md``) and applied here the way kube-apiserver applies it to a request made
with ``fieldValidation=Strict`` (kubectl's default since 1.27):

* A field the schema does not declare is an error (the server would prune it and, in strict mode,
  reject the request): every object schema, with or without ``properties``, that has neither
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields: true`` is closed. Schemas
  inside ``anyOf``/``oneOf``/``allOf``/``not`` are value validations only in a structural CRD
  schema, so they are left open.
* ``x-kubernetes-int-or-string: true`` accepts an integer or a string; ``format: int32``/``int64``
  bound integers to their range; ``format: date-time`` must be RFC 3339.
* ``x-kubernetes-list-type: set`` items are unique; ``map`` items are unique by their
  ``x-kubernetes-list-map-keys``.
* ``null`` is accepted only where the schema says ``nullable: true``.
* ``metadata`` is checked minimally: only ObjectMeta's fields, ``name`` (or ``generateName``) set,
  ``name``/``namespace``/``generateName`` strings, ``labels``/``annotations`` string maps.

Not modelled: CEL rules (``x-kubernetes-validations``; the bundled schemas have none, which a test
checks), defaulting, and the name/label syntax checks the API server makes on ObjectMeta.
Regular expressions are RE2 upstream and Python's ``re`` here; every pattern is compiled when its
schema loads, so one Python cannot read fails loudly instead of being skipped.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators

SCHEMA_DIR = Path(__file__).parent / "crd_schemas"

KNOWN_KINDS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("cert-manager.io/v1", "Certificate"): "cert-manager.io_v1_Certificate.json",
        ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_ServiceMonitor.json",
        ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_PrometheusRule.json",
    }
)
"""(apiVersion, kind) of every custom resource kind with a schema, and its file in ``SCHEMA_DIR``."""


class CustomResourceInvalid(ValueError):
    """A custom resource that the API server would reject; ``errors`` holds ``(path, message)``."""

    def __init__(self, what: str, errors: list[tuple[str, str]]) -> None:
        self.what = what
        self.errors = errors
        lines = "\n".join(f"  {path}: {message}" for path, message in errors)
        super().__init__(f"{what} is invalid ({len(errors)} error{'s' if len(errors) != 1 else ''}):\n{lines}")

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.errors]


class UnknownCustomResource(LookupError):
    """No schema is kept for this apiVersion and kind."""


_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}

# ObjectMeta: only its fields; name, namespace, labels and annotations typed, the rest loosely.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "generateName": {"type": "string", "minLength": 1},
        "namespace": {"type": "string", "minLength": 1},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    "additionalProperties": False,
}

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or _in_range(value, "int32")


@_FORMATS.checks("int64")
def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or _in_range(value, "int64")


def _in_range(value: int, fmt: str) -> bool:
    low, high = _INT_RANGES[fmt]
    return low <= value <= high


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # raises on 2025-02-30 etc.
    return True


def _list_map_keys(
    validator: Any, keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``x-kubernetes-list-type: map``: no two items share the values of the map keys."""
    if not validator.is_type(instance, "array"):
        return
    seen: set[str] = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        key = json.dumps([item.get(k) for k in keys])
        if key in seen:
            shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield ValidationError(f"duplicate entry with {shown} (list-type map keyed by {', '.join(keys)})")
        seen.add(key)


# types-jsonschema leaves extend() unannotated.
_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft7Validator, validators={"x-kubernetes-list-map-keys": _list_map_keys}
)

# RE2 lets a flag group follow an anchor ("^(?i)..."); Python 3.11+ wants global flags first.
_LEADING_FLAGS = re.compile(r"^(\^?)\(\?([imsU]+)\)")


def _python_pattern(pattern: str) -> str:
    match = _LEADING_FLAGS.match(pattern)
    if match and match.group(1):
        pattern = f"(?{match.group(2)}){match.group(1)}{pattern[match.end() :]}"
    re.compile(pattern)  # a pattern Python cannot read must fail here, not be skipped
    return pattern


def _strict(node: Mapping[str, Any], *, structural: bool) -> dict[str, Any]:
    """A copy of a CRD schema node as a closed JSON schema (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _strict(sub, structural=structural) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = _strict(value, structural=structural)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_strict(sub, structural=False) for sub in value]
        elif key == "not":
            out[key] = _strict(value, structural=False)
        elif key == "pattern":
            out[key] = _python_pattern(value)
        else:
            out[key] = copy.deepcopy(value)

    if out.get("x-kubernetes-int-or-string") is True and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-embedded-resource") is True:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]

    is_object = out.get("type") == "object" or "properties" in out
    open_ = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields") is True
    if structural and is_object and not open_:
        out["additionalProperties"] = False
    return out


@cache
def _validator(api_version: str, kind: str) -> Any:
    raw = json.loads((SCHEMA_DIR / KNOWN_KINDS[(api_version, kind)]).read_text())
    schema = _strict(raw, structural=True)
    schema["properties"]["metadata"] = METADATA_SCHEMA
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    _Validator.check_schema(schema)
    return _Validator(schema, format_checker=_FORMATS)


def strict_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The closed JSON schema a manifest of this kind is validated against (for inspection)."""
    if (api_version, kind) not in KNOWN_KINDS:
        raise UnknownCustomResource(f"no schema for {api_version} {kind}; known: {sorted(KNOWN_KINDS)}")
    return copy.deepcopy(_validator(api_version, kind).schema)


def _path(parts: Iterator[str | int] | Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _describe(error: ValidationError) -> list[tuple[str, str]]:
    """(path, message) of one error, kubectl style; an unknown field is named in its path."""
    path = _path(error.absolute_path)
    prefix = "" if path == "<root>" else f"{path}."
    # An error raised while validating has all three; jsonschema types them with its "unset" sentinel.
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    expected: Any = error.validator_value
    if error.validator == "additionalProperties" and expected is False:
        known = schema.get("properties", {})
        return [(f"{prefix}{name}", "unknown field") for name in sorted(instance) if name not in known]
    if error.validator == "required":
        missing = [name for name in expected if name not in instance]
        return [(f"{prefix}{name}", "required field is missing") for name in missing]
    if error.validator == "anyOf" and schema.get("x-kubernetes-int-or-string") is True:
        return [(path, f"must be an integer or a string, got {error.instance!r}")]
    if error.validator in ("anyOf", "oneOf") and error.context:
        reasons = "; ".join(sorted({sub.message for sub in error.context}))
        return [(path, f"{error.message} ({reasons})")]
    if error.validator == "format":
        return [(path, f"{error.instance!r} is not a valid {error.validator_value}")]
    return [(path, error.message)]


def validate_custom_resource(manifest: Mapping[str, Any]) -> None:
    """Raise ``CustomResourceInvalid`` unless ``manifest`` would pass strict server-side validation.

    The schema is chosen by ``apiVersion`` and ``kind``; ``UnknownCustomResource`` if none is kept.
    """
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or (api_version, kind) not in KNOWN_KINDS:
        raise UnknownCustomResource(f"no schema for {api_version!r} {kind!r}; known: {sorted(KNOWN_KINDS)}")
    errors = sorted(
        {line for error in _validator(api_version, kind).iter_errors(manifest) for line in _describe(error)}
    )
    if errors:
        meta = manifest.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
        where = "/".join(str(p) for p in (namespace, name) if p) or "<unnamed>"
        raise CustomResourceInvalid(f"{kind} {where}", errors)
