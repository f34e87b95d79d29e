"""The kubelet's ``$(VAR)`` expansion (k8s.io/kubernetes third_party/forked/golang/expansion).

``$(NAME)`` becomes the value of NAME if it is defined, else stays as written; ``$$`` is a literal
``$``; a ``$`` followed by anything else, or an unterminated ``$(``, is kept as is.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, *contexts: Mapping[str, str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1 :])
            if is_var:
                out.append(_lookup(read, contexts))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_variable(rest: str) -> tuple[str, bool, int]:
    if rest[0] == "$":
        return "$", False, 1
    if rest[0] == "(":
        end = rest.find(")", 1)
        if end != -1:
            return rest[1:end], True, end + 1
        return "$" + rest, False, len(rest)
    return "$" + rest[0], False, 1


def _lookup(name: str, contexts: tuple[Mapping[str, str], ...]) -> str:
    for context in contexts:
        if name in context:
            return context[name]
    return f"$({name})"
