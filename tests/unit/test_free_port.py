"""Ports for the local platform's components: each one different, so no two components share a port."""

from __future__ import annotations

import socket

from runtune.dev.platform import PlatformPorts
from runtune.dev.processes import free_port


def test_free_ports_are_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:  # and each can be bound
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_platforms_ports_are_all_distinct() -> None:
    ports = PlatformPorts.free()
    numbers = [ports.gateway, ports.preprocessing, ports.training, ports.inference, ports.engine]
    numbers += [ports.emulators.firestore, ports.emulators.storage, ports.emulators.auth]
    assert len(set(numbers)) == len(numbers)
