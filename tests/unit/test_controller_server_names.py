"""The names in the controller's serving certificate, for the addresses it listens on."""

from __future__ import annotations

import asyncio

from nodemesh.controller.server import server_names


def test_a_wildcard_listen_names_every_local_address_even_inside_the_running_loop() -> None:
    # The controller makes its certificate inside its event loop; a pod listens on 0.0.0.0.
    async def names() -> list[str]:
        return server_names("0.0.0.0", ["nodemesh-controller.nodemesh-system.svc"])

    found = asyncio.run(names())
    assert "127.0.0.1" in found and found[-1] == "nodemesh-controller.nodemesh-system.svc"
    assert len(found) == len(set(found))


def test_a_given_address_is_the_name() -> None:
    assert server_names("172.30.0.254")[0] == "172.30.0.254"
