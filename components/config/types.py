"""Value types of the stack configuration: sizes, durations, CPU quantities, integers, image
references, CIDRs, URLs.

One parser per value type, which reads the whole value or refuses it (no trailing text, no
fractions where a whole number is needed), and bounds per field (``within``, ``size_within``,
``duration_within``). Each error message says what is accepted, so the config loader can report
"key, value given, what is accepted" without knowing the type. Names are in ``config.names``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ByteSize, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

MODEL_CONFIG = ConfigDict(
    extra="forbid",
    alias_generator=to_camel,
    populate_by_name=True,
    # Field docstrings become descriptions: Pulumi.yaml's config block is checked against them.
    use_attribute_docstrings=True,
    frozen=True,
)
"""Every stack config model's settings: camelCase keys, unknown keys refused, immutable."""


class ConfigModel(BaseModel):
    """Base of every stack config model."""

    model_config = MODEL_CONFIG


KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _number_text(value: Any, what: str) -> Decimal:
    """A YAML number or a decimal numeral as text, exactly (no float rounding, no bool)."""
    if isinstance(value, bool):
        raise PydanticCustomError("number", f"expected {what}, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("number", f"expected {what} (a finite number)")
        return Decimal(repr(value))
    raise PydanticCustomError("number", f"expected {what}")


# --- Integers -------------------------------------------------------------------------------


def _integer(value: Any) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return int(value)
    if isinstance(value, str):
        raise PydanticCustomError("integer", "expected a whole number such as 6379")
    number = _number_text(value, "a whole number")
    if number != number.to_integral_value():
        raise PydanticCustomError("integer", "expected a whole number, not a fraction")
    return int(number)


Integer = Annotated[int, BeforeValidator(_integer)]
"""A whole number: a YAML integer, an integral float (6379.0, as stack state returns numbers) or
digits as text; booleans, fractions and "6_379" are refused."""


def within(minimum: float, maximum: float, unit: str = "") -> AfterValidator:
    """Bounds of a number, inclusive."""

    def check(value: float) -> float:
        if not minimum <= value <= maximum:
            raise PydanticCustomError("bounds", f"expected a number from {minimum}{unit} to {maximum}{unit}")
        return value

    return AfterValidator(check)


def _ratio(value: Any) -> float:
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", value):
            raise PydanticCustomError("ratio", "expected a number such as 0.9")
        return float(value)
    return float(_number_text(value, "a number such as 0.9"))


Ratio = Annotated[float, BeforeValidator(_ratio)]
"""A finite number (use ``within`` for bounds); booleans, NaN and infinities are refused."""

# --- Sizes ----------------------------------------------------------------------------------

# Units are exact: Kubernetes' binary Ki/Mi/Gi/Ti and decimal k/M/G/T, and pydantic ByteSize's
# forms, case-insensitive (kb/mb/gb/tb powers of 1000, KiB/MiB/GiB/TiB powers of 1024). A bare "m"
# is refused: milli in Kubernetes (512m bytes is half a byte), mega in valkey.conf.
_K8S_UNITS = {"Ki": KIB, "Mi": MIB, "Gi": GIB, "Ti": TIB, "Pi": 1024**5, "k": 10**3, "M": 10**6, "G": 10**9}
_K8S_UNITS |= {"T": 10**12, "P": 10**15, "K": 10**3, "g": 10**9, "t": 10**12}
_BYTESIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15}
_BYTESIZE_UNITS |= {"kib": KIB, "mib": MIB, "gib": GIB, "tib": TIB, "pib": 1024**5}
_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[A-Za-z]*)")
SIZE_FORMS = (
    "a size such as 512Mi, 2Gi, 512MiB or 2GiB (powers of 1024), 500M, 2G, 512mb or 2gb (powers of 1000), "
    "or a whole number of bytes"
)


def _size(value: Any) -> int:
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise PydanticCustomError("size", f"expected {SIZE_FORMS}")
        unit = match["unit"]
        if unit == "m":
            raise PydanticCustomError(
                "size", "'m' is milli in Kubernetes and mega in valkey.conf: write M or MB (10^6) or Mi (2^20)"
            )
        factor = _K8S_UNITS.get(unit) or _BYTESIZE_UNITS.get(unit.lower()) if unit else 1
        if not factor:
            raise PydanticCustomError("size", f"expected {SIZE_FORMS}")
        number = Decimal(match["number"]) * factor
    else:
        number = _number_text(value, SIZE_FORMS)
    if number != number.to_integral_value():
        raise PydanticCustomError("size", "expected a whole number of bytes (this one has a fraction of a byte)")
    return int(number)


Size = Annotated[ByteSize, BeforeValidator(_size)]
"""A byte size (see ``SIZE_FORMS``); bounds come from ``size_within`` on each field."""


def human(size: int) -> str:
    """A size the way the stack files write it: 2Gi, 610Mi, 1536Ki, or bytes."""
    for unit, factor in (("Ti", TIB), ("Gi", GIB), ("Mi", MIB), ("Ki", KIB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def size_within(minimum: int, maximum: int) -> AfterValidator:
    def check(value: ByteSize) -> ByteSize:
        if not minimum <= value <= maximum:
            raise PydanticCustomError("size", f"expected a size from {human(minimum)} to {human(maximum)}")
        return value

    return AfterValidator(check)


# --- Durations ------------------------------------------------------------------------------

DAY = 86400
DURATION_MAX_SECONDS = 36500 * DAY
"""A hundred years: past any bound a field has, and well inside what ``timedelta`` holds."""
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# Go's time.ParseDuration forms (what Kubernetes and Prometheus users write), plus days.
_GO_STYLE = re.compile("".join(rf"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in ("d", "h", "m", "s", "ms")))
_ISO_8601 = re.compile(r"P(?:(?P<d>[0-9]+)D)?(?:T(?=[0-9])(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?")
_UNIT_SECONDS = {"d": Decimal(86400), "h": Decimal(3600), "m": Decimal(60), "s": Decimal(1), "ms": Decimal("0.001")}
DURATION_FORMS = (
    "a duration in whole seconds such as 30s, 5m, 1h30m, 24h or 1d, a number of seconds, or ISO 8601 (PT5M)"
)


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        seconds = Decimal(str(value.total_seconds()))
    elif isinstance(value, str):
        parsed = None
        if re.fullmatch(_NUMBER, value):
            parsed = Decimal(value)
        for pattern in (_GO_STYLE, _ISO_8601):
            match = pattern.fullmatch(value)
            if value and match is not None and any(match.groupdict().values()):
                parsed = sum((Decimal(n) * _UNIT_SECONDS[u] for u, n in match.groupdict().items() if n), Decimal(0))
        if parsed is None:
            raise PydanticCustomError("duration", f"expected {DURATION_FORMS}")
        seconds = parsed
    else:
        seconds = _number_text(value, DURATION_FORMS)
    if seconds != seconds.to_integral_value():
        raise PydanticCustomError("duration", "expected whole seconds: fractions of a second are not kept")
    if not 0 <= seconds <= DURATION_MAX_SECONDS:
        raise PydanticCustomError("duration", f"expected a duration from 0s to {DURATION_MAX_SECONDS // DAY}d")
    return timedelta(seconds=int(seconds))


Duration = Annotated[timedelta, BeforeValidator(_duration)]
"""A whole number of seconds (see ``DURATION_FORMS``); bounds come from ``duration_within``."""


def seconds_text(seconds: int) -> str:
    for unit, factor in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"


def duration_within(minimum: int, maximum: int, above: bool = False) -> AfterValidator:
    """Bounds in seconds, inclusive; ``above``: strictly greater than ``minimum``."""

    def check(value: timedelta) -> timedelta:
        seconds = int(value.total_seconds())
        low_ok = seconds > minimum if above else seconds >= minimum
        if not (low_ok and seconds <= maximum):
            low = f"more than {seconds_text(minimum)}" if above else f"from {seconds_text(minimum)}"
            raise PydanticCustomError("duration", f"expected a duration {low} to {seconds_text(maximum)}")
        return value

    return AfterValidator(check)


# --- CPU quantities -------------------------------------------------------------------------

_CPU = re.compile(r"(?P<millis>[0-9]+)m|(?P<cores>[0-9]+(?:\.[0-9]{1,3})?)")
CPU_MAX_MILLIS = 256_000


def _cpu(value: Any) -> str:
    """Kubernetes CPU quantity text, from "250m", "1.5" or a YAML number (1, 0.5)."""
    if isinstance(value, str):
        match = _CPU.fullmatch(value)
        if match is None:
            raise PydanticCustomError("cpu", "expected a CPU quantity such as 250m, 1 or 1.5 (at most 3 decimals)")
        millis = Decimal(match["millis"]) if match["millis"] else Decimal(match["cores"]) * 1000
    else:
        millis = _number_text(value, "a CPU quantity such as 250m, 1 or 1.5") * 1000
        if millis != millis.to_integral_value():
            raise PydanticCustomError("cpu", "expected a CPU quantity in whole millicores (at most 3 decimals)")
    if not 1 <= millis <= CPU_MAX_MILLIS:
        raise PydanticCustomError("cpu", f"expected a CPU quantity from 1m to {CPU_MAX_MILLIS // 1000}")
    whole = int(millis)
    return str(whole // 1000) if whole % 1000 == 0 else f"{whole}m"


CpuQuantity = Annotated[str, BeforeValidator(_cpu)]
"""A CPU quantity, normalized to Kubernetes' canonical text: 1, 250m."""


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(quantity) * 1000


# --- References ---------------------------------------------------------------------------

# A registry path with a tag, a digest, or both. An image without either, or tagged only
# "latest", is not a pin: the same config could deploy a different server tomorrow.
# The distribution reference grammar: an optional registry host (labels of letters, digits and
# '-', any case, an optional port), lowercase path components, then a tag and/or a digest.
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?P<repo>(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


def _image(value: str) -> str:
    match = _IMAGE.fullmatch(value)
    if len(value) > 512 or not match or not (match["tag"] or match["digest"]):
        raise PydanticCustomError(
            "image",
            "expected a pinned image reference: repository:tag, repository@sha256:<64 hex> "
            "or both, such as valkey/valkey:8.1.8-alpine",
        )
    if match["tag"] == "latest" and not match["digest"]:
        raise PydanticCustomError("image", "the tag 'latest' is not a pin: use a version tag or a digest")
    return value


ImageRef = Annotated[str, AfterValidator(_image)]
"""A container image pinned by tag and/or sha256 digest."""


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise PydanticCustomError("cidr", "expected a CIDR block such as 10.20.0.0/16 (host bits zero)") from None


Cidr = Annotated[str, AfterValidator(_cidr)]

_STACK_PART = r"[A-Za-z0-9_.-]{1,100}"


def _stack_name(value: str) -> str:
    if not re.fullmatch(rf"{_STACK_PART}/{_STACK_PART}/{_STACK_PART}", value):
        raise PydanticCustomError(
            "stack_name",
            "expected a fully qualified stack name <organization>/<project>/<stack>, "
            "such as organization/valkey/region1",
        )
    return value


StackName = Annotated[str, AfterValidator(_stack_name)]


def _url(value: str) -> str:
    parts = urlsplit(value)
    if (
        len(value) > 2048
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or re.search(r"[\s\"'<>\\]", value)
        or _CONTROL.search(value)
    ):
        raise PydanticCustomError(
            "url", "expected an http(s) URL without spaces or quotes, such as https://git.example.com/valkey/README.md"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_url)]
"""An http(s) URL kept as written (pydantic's own URL type would rewrite it)."""


def text_without_control(max_length: int) -> AfterValidator:
    """Free text on one line: no line breaks or control characters."""

    def check(value: str) -> str:
        if not value or len(value) > max_length or _CONTROL.search(value):
            raise PydanticCustomError(
                "text", f"expected 1 to {max_length} characters on one line, without control characters"
            )
        return value

    return AfterValidator(check)
