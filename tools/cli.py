"""The ``nodemesh`` command.

Subcommands live next to what they drive and are imported only when called, so that
``nodemesh --help`` or a quick CLI call does not pay for bcc, gRPC and the proxy.

This group is also the one error boundary (``nodemesh/errors.py``): a ``UserError`` from any
subcommand ends the process with its message and exit code, the way click ends on its own
usage errors; other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from nodemesh.errors import UserError

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "check": "nodemesh.tools.check:check",
    "agent": "nodemesh.agent.main:agent",
    "controller": "nodemesh.controller.main:controller",
    "sim": "nodemesh.tools.sim.cli:sim",
    "demo": "nodemesh.tools.demo:demo",
    "tunnels": "nodemesh.tools.observe:tunnels",
    "certs": "nodemesh.tools.observe:certs",
    "policies": "nodemesh.tools.observe:policies",
    "authz": "nodemesh.tools.observe:authz",
    "top": "nodemesh.tools.top.command:top",
    "bench": "nodemesh.tools.bench.run:bench",
    "bench-ab": "nodemesh.tools.bench.ab:bench_ab",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _shown(exc) from None


def _shown(exc: UserError) -> click.ClickException:
    """``exc`` as click shows its own errors: ``Error: <message>`` on stderr, then the exit."""
    shown = click.ClickException(str(exc))
    shown.exit_code = exc.exit_code
    return shown


@click.group(cls=LazyGroup)
@click.version_option(package_name="nodemesh")
def main() -> None:
    """nodemesh: a sidecarless service mesh (eBPF steering into a per-node proxy)."""
