"""Ports for servers started a moment later lie outside the kernel's ephemeral range (which
outgoing connections draw from) and are free when drawn."""

from __future__ import annotations

import socket

from app.core.ports import LOWEST, bindable, ephemeral_start, free_port_run, free_ports


def test_drawn_ports_are_distinct_free_and_below_the_ephemeral_range():
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(LOWEST <= p < ephemeral_start() and bindable(p) for p in ports)


def test_a_run_of_ports_is_consecutive_and_free():
    start = free_port_run(3)
    assert start + 3 <= ephemeral_start()
    assert all(bindable(p) for p in range(start, start + 3))


def test_a_port_a_server_listens_on_is_not_bindable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port_run(1)))
        server.listen()
        assert not bindable(server.getsockname()[1])


def test_the_highest_bound_is_kept():
    assert all(p < 12000 for p in free_ports(5, highest=12000))
