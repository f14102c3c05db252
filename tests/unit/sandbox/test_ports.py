"""The sandbox's ports are free and never ones the kernel hands out by itself."""

from __future__ import annotations

import socket

from callproof.sandbox import ports


def test_free_port_is_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = ports.ephemeral_range()
    for _ in range(20):
        port = ports.free_port()
        assert not low <= port <= high and port >= ports.LOWEST
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_chosen(monkeypatch) -> None:
    free = ports.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        picks = iter([busy.getsockname()[1], free])
        monkeypatch.setattr(ports.random.SystemRandom, "randint", lambda self, a, b: next(picks))
        assert ports.free_port() == free


def test_no_room_below_or_above_falls_back_to_the_kernel(monkeypatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    port = ports.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
