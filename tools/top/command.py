"""The ``nodemesh top`` command: scrape, compute, show, every INTERVAL seconds.

A table that refreshes in place on a terminal (rich's Live); elsewhere (a pipe, a file) each
refresh is printed after the last, like ``top -b``. ``-o json`` prints a document per refresh
(one by default). Ctrl-C ends a table view as a user quits ``top``: quietly, exit 0.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from time import sleep
from typing import Callable, Iterator

import click
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from nodemesh.tools.sim.names import DEFAULT_SIM
from nodemesh.tools.top.metrics import Scrape

UNBOUNDED_WIDTH = 10_000  # columns for a table that is not on a terminal: as wide as it is (_console)
# (before, after): two consecutive scrapes
Pair = tuple[Scrape, Scrape]


def refreshes(scrape: Callable[[], Scrape], interval: float, count: int | None) -> Iterator[Pair]:
    """``count`` pairs of consecutive scrapes ``interval`` apart (None: until interrupted); the
    first scrape is only the baseline of the first rates."""
    before = scrape()
    done = 0
    while count is None or done < count:
        sleep(interval)
        after = scrape()
        yield before, after
        before, done = after, done + 1


@click.command()
@click.option("--name", "sim", default=DEFAULT_SIM, show_default=True, envvar="NODEMESH_SIM",
              help="Which simulated cluster (env NODEMESH_SIM).")
@click.option("--node", default=None, help="Only this node's agent (with --reporter source: traffic "
                                           "from its pods; destination: to them).")
@click.option("--reporter", type=click.Choice(["source", "destination"]), default="source",
              show_default=True,
              help="Whose counts to show: the client's node agent (source) or the server's "
                   "(destination). Both agents report a connection between meshed pods, so top "
                   "shows one reporter and each connection counts once; only destination sees "
                   "clients outside the mesh.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between scrapes; the rates are over this interval.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Refresh this many times, then exit [default: until Ctrl-C; with -o json, 1].")
@click.option("--once", is_flag=True, help="One refresh, then exit (--count 1).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: a snapshot (per refresh) as a JSON document, at full precision.")
def top(sim: str, node: str | None, reporter: str, interval: float, count: int | None, once: bool,
        output: str) -> None:
    """Live traffic per workload pair and service, from the agents' Prometheus metrics.

    A row is a source workload, its destination (the service, or the workload when the
    connection was not to a service) and whether it is mutual TLS, summed over the nodes:
    new connections per second, active connections, bytes per second to and from the
    destination, failures per second by Istio response flag, and the destination service's
    upstream connect latency (p50, p99) over the interval. Rates are the difference of two
    scrapes INTERVAL seconds apart. Ctrl-C quits.
    """
    from nodemesh.tools.admin_client import AdminError
    from nodemesh.tools.agents import node_namespaces
    from nodemesh.tools.top import view
    from nodemesh.tools.top.rates import rows
    from nodemesh.tools.top.scrape import scrape

    if once:
        if count not in (None, 1):
            raise click.UsageError("--once is --count 1: give one of them")
        count = 1
    if count is None and output == "json":
        count = 1
    namespaces = node_namespaces(sim, node)
    pairs = refreshes(lambda: scrape(namespaces), interval, count)
    last: Scrape | None = None
    if output == "json":
        for before, last in pairs:
            document = view.document(rows(before, last, reporter), last, sim, reporter, interval)
            click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        title = f"nodemesh top: sim {sim}, reporter {reporter}, every {interval:g} s"
        last = _show_tables(_console(), pairs,
                            lambda before, after: view.table(rows(before, after, reporter), after, title))
    if last is not None and last.unreachable:
        raise AdminError(f"no answer from the agent on {', '.join(sorted(last.unreachable))} "
                         "(the reason is above)")


def _console() -> Console:
    """A terminal's own width; elsewhere (a pipe, a file) as wide as the table needs, so that a
    row stays one line for grep and the like (rich would assume 80 columns and fold it)."""
    console = Console()
    return console if console.is_terminal else Console(width=UNBOUNDED_WIDTH)


def _show_tables(console: Console, pairs: Iterator[Pair],
                 table: Callable[[Scrape, Scrape], RenderableType]) -> Scrape | None:
    """A table per refresh, until the count is reached (the last scrape) or Ctrl-C (None: the
    user quit, which is no error, whatever the last scrape found)."""
    live = (Live(Text("scraping the agents: rates need two scrapes..."), console=console,
                 auto_refresh=False) if console.is_terminal else None)
    last = None
    with live or nullcontext():
        try:
            for before, last in pairs:
                if live is not None:
                    live.update(table(before, last), refresh=True)
                else:
                    console.print(table(before, last))
        except KeyboardInterrupt:
            return None
    return last
