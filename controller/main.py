"""``nodemesh controller``: build the mesh model from a file and stream it to the agents."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

DEFAULT_STATE_DIR = Path("/var/lib/nodemesh/controller")
DEFAULT_LISTEN = "0.0.0.0:15012"
EXIT_INVALID_CONFIG = 2

log = logging.getLogger("nodemesh.controller")


def _check_listen(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from nodemesh.controller.xds.server import parse_listen

    try:
        parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@click.option("--file", "path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Kubernetes YAML (Namespace, Pod, Service); reloaded when it changes.")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_STATE_DIR, show_default=True,
              help="Where assigned addresses are kept across restarts (ipam.json).")
@click.option("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, show_default=True,
              callback=_check_listen,
              help="HOST:PORT for the agents' gRPC config stream (port 0: any free port).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
                                               case_sensitive=False),
              default="info", show_default=True)
def controller(path: Path, state_dir: Path, listen: str, log_level: str) -> None:
    """Build the mesh model from FILE and stream it to the node agents."""
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nodemesh.controller.kube.objects import ConfigError
    from nodemesh.controller.xds.server import ListenError

    try:
        asyncio.run(_run(path, state_dir, listen))
    except ConfigError as exc:
        click.echo(f"nodemesh controller: cannot start, {len(exc.errors)} problem(s):", err=True)
        for message in exc.errors:
            click.echo(f"  {message}", err=True)
        sys.exit(EXIT_INVALID_CONFIG)
    except ListenError as exc:
        click.echo(f"nodemesh controller: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"nodemesh controller: cannot use the state directory: "
                   f"{exc.filename or state_dir}: {exc.strerror or exc}; choose a writable "
                   "--state-dir", err=True)
        sys.exit(1)


async def _run(path: Path, state_dir: Path, listen: str) -> None:
    """Serve until SIGTERM/SIGINT, then close the streams and return (exit 0)."""
    from nodemesh.controller.model.ipam import Ipam
    from nodemesh.controller.sources.file import FileSource
    from nodemesh.controller.xds.server import serve

    running = await serve(FileSource(path, Ipam(state_dir)), listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, running.watcher}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping")
    stopping.cancel()
    await running.stop()
    if running.watcher in done:
        running.watcher.result()  # the source gave up on its own: a bug, let it surface
    log.info("stopped")
