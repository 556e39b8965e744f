"""Typed settings: an experiment's options as a frozen dataclass of commented defaults, each
value checked by type, range and allowed names before any work starts.

A field is declared with :func:`setting`, which records its bounds (``gt``, ``ge``, ``lt``,
``le``, as in pydantic) or its allowed names (``choices``: a tuple or a registry), and whether it
identifies the data a trial reads (``data=True``: the orchestrator checks each such value's data
before a sweep starts)::

    @dataclass(frozen=True)
    class Settings:
        lr: float = setting(1e-3, gt=0)  # Adam's learning rate
        model: str = setting("conv_vae", choices=MODELS)

    check_settings(Settings, {"lr": "abc"})
    # SettingsError: lr='abc': expected a number > 0

:func:`check_settings` builds the dataclass from a plain mapping; an unknown key, a value of the
wrong type, out of range or not among the allowed names raises one :class:`SettingsError` that
names the key, the value and what was expected. Cross-field rules live in the dataclass's
``__post_init__`` and raise :class:`SettingsError` too.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting's value is not one the experiment accepts; the message names the key."""


def setting(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Collection[str] | None = None,
    data: bool = False,
) -> Any:
    """A dataclass field with its default, bounds or allowed ``choices``, and whether it
    identifies the data a trial reads. Mutable defaults (a dict, a list) are copied per
    instance."""
    metadata = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "data": data}
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def defaults(cls: type) -> dict[str, Any]:
    """Every field of the settings dataclass ``cls`` with its default value."""
    return {field.name: _default(field) for field in dataclasses.fields(cls)}


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def data_keys(cls: type) -> list[str]:
    """The fields of ``cls`` declared with ``data=True``: the settings that pick the data."""
    return [field.name for field in dataclasses.fields(cls) if field.metadata.get("data")]


def check_settings(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls(**values)`` after checking every value against its field: an unknown key, a wrong
    type, a value out of range or not among the allowed names raises :class:`SettingsError`
    naming the key and what it expects. Keys ``cls`` does not have are errors too, listing the
    valid ones."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SettingsError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid settings: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    checked = {
        key: _check(key, value, hints[key], fields[key].metadata) for key, value in values.items()
    }
    try:
        return cls(**checked)
    except SettingsError:
        raise
    except (TypeError, ValueError) as error:  # a cross-field rule in __post_init__
        raise SettingsError(str(error)) from None


def _check(key: str, value: Any, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """``value`` if it fits the type ``hint`` and the field's bounds and choices (an int where
    a float is expected becomes a float), else :class:`SettingsError`."""
    allowed = [a for a in typing.get_args(hint)] if _is_union(hint) else [hint]
    if value is None:
        if type(None) in allowed:
            return None
        raise SettingsError(f"{key}=None: expected {_describe(allowed, metadata)}")
    for kind in allowed:
        converted = _as(kind, value)
        if converted is not _NO:
            _check_bounds(key, value, converted, metadata, allowed)
            return converted
    raise SettingsError(f"{key}={value!r}: expected {_describe(allowed, metadata)}")


_NO = object()


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _as(kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` when it is one (JSON's numbers: an int is a valid float), else
    ``_NO``. Booleans are never numbers, and a float is never an int."""
    origin = typing.get_origin(kind) or kind
    if origin is typing.Literal:
        return value if value in typing.get_args(kind) else _NO
    if origin is bool:
        return value if isinstance(value, bool) else _NO
    if origin is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if origin is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) else _NO
    if origin is str:
        return value if isinstance(value, str) else _NO
    if origin in (dict, Mapping):
        return dict(value) if isinstance(value, Mapping) else _NO
    if origin in (list, tuple):
        return origin(value) if isinstance(value, list | tuple) else _NO
    if kind is Any:
        return value
    return value if isinstance(value, origin) else _NO


def _check_bounds(
    key: str, given: Any, value: Any, metadata: Mapping[str, Any], allowed: list
) -> None:
    """``value`` (``given`` converted) within the field's choices and bounds; the error shows
    ``given``, what the user wrote."""
    choices = metadata.get("choices")
    if choices is not None and isinstance(value, str) and value not in choices:
        raise SettingsError(f"{key}={given!r}: expected one of {', '.join(sorted(choices))}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        tests = {
            "gt": lambda b: value > b,
            "ge": lambda b: value >= b,
            "lt": lambda b: value < b,
            "le": lambda b: value <= b,
        }
        for name, test in tests.items():
            bound = metadata.get(name)
            if bound is not None and not test(bound):
                raise SettingsError(f"{key}={given!r}: expected {_describe(allowed, metadata)}")


_BOUND_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _describe(allowed: list, metadata: Mapping[str, Any]) -> str:
    """What a field accepts, in words: 'an integer >= 1', 'one of a, b', 'a number or None'."""
    words = []
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if origin is typing.Literal:
            words.append("one of " + ", ".join(map(repr, typing.get_args(kind))))
        elif metadata.get("choices") is not None and origin is str:
            words.append("one of " + ", ".join(sorted(metadata["choices"])))
        else:
            name = {
                bool: "true or false",
                int: "an integer",
                float: "a number",
                str: "a string",
                dict: "a JSON object",
                list: "a JSON list",
                tuple: "a JSON list",
                type(None): "null",
            }.get(origin, getattr(origin, "__name__", str(origin)))
            if origin in (int, float):
                bounds = [
                    f"{_BOUND_WORDS[b]} {metadata[b]:g}"
                    for b in _BOUND_WORDS
                    if metadata.get(b) is not None
                ]
                name = " ".join([name, " and ".join(bounds)]) if bounds else name
            words.append(name)
    return " or ".join(words)
