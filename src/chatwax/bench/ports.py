"""Free ports for the stacks and servers a benchmark starts beside whatever else runs."""

from __future__ import annotations

from chatwax.dev.probes import port_free


def free_run(count: int, start: int) -> int:
    """The first of `count` consecutive free ports, searched upwards from `start`."""
    port = start
    while not all(port_free(port + i) for i in range(count)):
        port += count
    return port
