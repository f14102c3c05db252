"""A Merkle tree over the audit chain's entry hashes (RFC 6962, section 2.1), signed in each
checkpoint as ``entries_root``: an evidence package then proves that a call's entries are in
the chain the checkpoint signed with a few sibling hashes each, without carrying, and so
disclosing, any other entry.

Leaves are the entries' chain hashes (32 bytes each), in id order; a leaf is hashed as
``sha256(0x00 || leaf)``, an inner node as ``sha256(0x01 || left || right)``; a tree of ``n``
leaves is split after the largest power of two below ``n``. Built level by level, that is
pairing nodes from the left and carrying a lone last node up unchanged, which is what
:func:`levels` does. Written here (some 60 lines, specified by the RFC, stdlib only) rather
than taken from a library: the offline verifier must run with nothing but callproof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

TREE = "rfc6962-sha256"


def leaf_hash(entry_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _up(level: Sequence[bytes]) -> list[bytes]:
    nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])
    return nxt


def root(entry_hashes: Sequence[str]) -> str:
    """The tree's root (hex) over ``entry_hashes`` in order; the empty tree's is sha256('')."""
    if not entry_hashes:
        return hashlib.sha256(b"").hexdigest()
    level = [leaf_hash(h) for h in entry_hashes]
    while len(level) > 1:
        level = _up(level)
    return level[0].hex()


def levels(entry_hashes: Sequence[str]) -> list[list[bytes]]:
    """Every level of the tree, leaves first (for :func:`audit_path`)."""
    out = [[leaf_hash(h) for h in entry_hashes]]
    while len(out[-1]) > 1:
        out.append(_up(out[-1]))
    return out


def audit_path(tree: list[list[bytes]], index: int) -> list[str]:
    """The sibling hashes (hex) from leaf ``index`` up to the root."""
    path = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling].hex())
        index //= 2
    return path


def root_from_path(entry_hash: str, index: int, size: int, path: Sequence[str]) -> str | None:
    """The root that leaf ``index`` of a tree of ``size`` leaves and its ``path`` lead to
    (None when the path does not fit the tree's shape)."""
    if not 0 <= index < size:
        return None
    node, siblings = leaf_hash(entry_hash), list(path)
    while size > 1:
        if index % 2 == 1:
            if not siblings:
                return None
            node = node_hash(bytes.fromhex(siblings.pop(0)), node)
        elif index + 1 < size:
            if not siblings:
                return None
            node = node_hash(node, bytes.fromhex(siblings.pop(0)))
        index, size = index // 2, (size + 1) // 2
    return node.hex() if not siblings else None


class Accumulator:
    """The root after each appended leaf, in O(log n) memory (``audit verify`` checks every
    checkpoint's root in one pass over the chain)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # perfect subtrees (height, hash), left to right
        self.size = 0

    def add(self, entry_hash: str) -> None:
        node, height = leaf_hash(entry_hash), 0
        while self._stack and self._stack[-1][0] == height:
            node, height = node_hash(self._stack.pop()[1], node), height + 1
        self._stack.append((height, node))
        self.size += 1

    def root(self) -> str:
        if not self._stack:
            return hashlib.sha256(b"").hexdigest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node.hex()
