"""A statement's results on PostgreSQL, read like a ``sqlite3.Cursor``, and the statement in
libpq's own form (``$1``...), for :class:`storage.pg.PgConnection`.

Why not psycopg's cursor: a statement through ``Cursor.execute`` cost ~60 us of the client's
CPU (``SELECT * FROM calls WHERE id``), most of it psycopg's Python (its generators, the
prepared-statement bookkeeping, a ``Column`` per column); through libpq's ``PQexecParams``
(blocking, the GIL released), with psycopg's own C ``Transformer`` to dump the parameters and
load the rows, ~40 us (bench/bench_pg_calls.py).  The types are psycopg's either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from psycopg.pq import ExecStatus

#: the result statuses that carry rows (a description, maybe no row)
_WITH_ROWS = frozenset({ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, getattr(ExecStatus, "TUPLES_CHUNK", -1)})
_NATIVE: dict[str, tuple[str, tuple[str, ...] | None]] = {}
_MAX_NATIVE = 4096

Description = tuple[tuple[str, None, None, None, None, None, None], ...]


def native(translated: str) -> tuple[str, tuple[str, ...] | None]:
    """psycopg's placeholders (``%s``, ``%(name)s``, ``%%``: :func:`storage.pg.translate`) as
    libpq's ``$1``, ``$2``..., with the names in their order (a ``:name`` used twice is one
    parameter), or None for positional ones."""
    done = _NATIVE.get(translated)
    if done is not None:
        return done
    out: list[str] = []
    names: list[str] = []
    positional = 0
    i, n = 0, len(translated)
    while i < n:
        ch = translated[i]
        if ch != "%":
            j = translated.find("%", i)
            j = n if j < 0 else j
            out.append(translated[i:j])
            i = j
            continue
        nxt = translated[i + 1:i + 2]
        if nxt == "%":
            out.append("%")
            i += 2
        elif nxt == "s":
            positional += 1
            out.append(f"${positional}")
            i += 2
        elif nxt == "(":
            end = translated.index(")s", i)
            name = translated[i + 2:end]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = end + 2
        else:  # pragma: no cover - translate() doubles every other %
            out.append(ch)
            i += 1
    if positional and names:
        raise ValueError("a statement mixes ? and :name parameters")
    done = ("".join(out), tuple(names) if names else None)
    if len(_NATIVE) < _MAX_NATIVE:  # the statements are constants: a bounded cache
        _NATIVE[translated] = done
    return done


class PgCursor:
    """The results of one statement, read like a ``sqlite3.Cursor``: its rows, loaded when it ran
    (the connection's next statement may come before they are read), ``description`` in
    sqlite3's shape (a 7-tuple per column, the name first), ``rowcount`` and ``lastrowid``."""

    __slots__ = ("_description", "_lastrowid", "_pos", "_rows", "rowcount")

    def __init__(self, rows: list[Any], description: Description | None, rowcount: int,
                 lastrowid: int | None = None, pos: int = 0) -> None:
        self._rows = rows
        self._description = description
        self.rowcount = rowcount
        self._lastrowid = lastrowid
        self._pos = pos

    @classmethod
    def of(cls, res: Any, tx: Any, encoding: str, returns_id: bool = False) -> PgCursor:
        """The cursor of a libpq result; ``tx``: a psycopg Transformer of the connection."""
        rowcount = res.command_tuples
        rowcount = -1 if rowcount is None else rowcount
        if not (res.nfields or res.status in _WITH_ROWS):
            return cls([], None, rowcount)
        tx.set_pgresult(res)
        rows = tx.load_rows(0, res.ntuples, tuple)
        description = tuple(((res.fname(i) or b"").decode(encoding), None, None, None, None, None, None)
                            for i in range(res.nfields))
        if returns_id:  # the id the statement's added RETURNING gave: not a row of the caller's
            return cls(rows, description, rowcount, rows[0][0] if rows else None, pos=1)
        return cls(rows, description, rowcount)

    @property
    def description(self) -> Description | None:
        return self._description

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._pos:] if self._pos else self._rows
        self._pos = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


NO_ROWS = PgCursor([], None, -1)
