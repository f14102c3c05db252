"""The web page's database: a :class:`callproof.storage.SyncPool` of sync
handles (storage/pool.py says why a pool and not :class:`Database`).
Handlers call ``await ctx.db.run(fn, ...)``; ``fn`` gets a
:class:`callproof.storage.SyncDatabase` first."""

from __future__ import annotations

from callproof.storage import SyncPool

DbPool = SyncPool

__all__ = ["DbPool"]
