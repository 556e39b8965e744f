"""Registries: plain dicts keyed by name whose missing keys give a useful error."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """A ``dict`` of named components; an unknown name lists the valid ones.

    >>> MODELS = Registry("model", {"conv_vae": object})
    >>> MODELS["resnet"]
    Traceback (most recent call last):
    KeyError: "unknown model 'resnet'; valid names: conv_vae"
    """

    def __init__(self, kind: str, entries: dict[str, T] | None = None):
        super().__init__(entries or {})
        self.kind = kind

    def __missing__(self, name: str) -> T:
        raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self))}")
