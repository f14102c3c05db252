"""Typed rows returned by the repositories.

Rows are frozen dataclasses with one attribute per column.  They also answer
``row["column"]``, ``row.get("column")`` and ``dict(row)`` (``keys`` +
``__getitem__``) so templates, JSON output and older callers that read rows as
mappings keep working while they move to attributes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Self, TypeVar

R = TypeVar("R", bound="Row")


class Row:
    """Mixin for the row dataclasses (see the module docstring)."""

    __slots__ = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """The row from a column -> value mapping; columns the class does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def maybe(cls, data: Mapping[str, Any] | None) -> Self | None:
        return None if data is None else cls.from_mapping(data)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.keys() else default

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}


def rows(cls: type[R], items: list[dict[str, Any]]) -> list[R]:
    return [cls.from_mapping(item) for item in items]
