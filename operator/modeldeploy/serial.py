"""Frozen dataclasses as plain JSON data (for the CR status) and back, generically.

camelCase keys, RFC 3339 times, enums by value. Missing keys take the field's default, so an
empty mapping loads as the dataclass's initial value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from types import NoneType, UnionType
from typing import Any, get_args, get_origin, get_type_hints


def dump(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {camel(f.name): dump(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [dump(v) for v in value]
    return value


def load(cls: Any, data: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls) if camel(f.name) in data]
    return cls(**{name: _load_value(hints[name], data[camel(name)]) for name in known})


def _load_value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if get_origin(hint) is UnionType:  # X | None
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is tuple:
        return tuple(_load_value(get_args(hint)[0], v) for v in value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if is_dataclass(hint):
        return load(hint, value)
    return value


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def iso(t: datetime) -> str:
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def shown(t: datetime) -> str:
    """A time in a message for people: whole seconds (`iso` keeps microseconds for state)."""
    return iso(t.replace(microsecond=0))
