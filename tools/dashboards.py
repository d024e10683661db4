"""The Grafana dashboards of telemetry/grafana/, built with Grafana's foundation SDK.

Three dashboards over the metrics of docs/telemetry.md: the mesh at a glance, one workload's
inbound and outbound traffic, and the health of the node agents and the controller. Traffic
panels use Istio's metrics as Istio's own dashboards do (``sum by (...) (rate(...
[$__rate_interval]))``, ``reporter="destination"`` for what a workload received,
``reporter="source"`` for what it sent), so that a user's Istio habits carry over.

Built in code rather than written as JSON: a panel is a few lines here and the layout, ids,
refIds and schema fields come out right for the Grafana version the SDK build targets
(GRAFANA_VERSION, schemaVersion 41). The JSON is committed (users import it as it is), and a
test checks that it is what this module writes. Regenerate after a change:

    .venv/bin/python -m nodemesh.tools.dashboards
"""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

GRAFANA_VERSION = "11.6"
TAG = "nodemesh"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
AGENT = 'job="nodemesh-agent", node=~"$node"'
CONTROLLER = 'job="nodemesh-controller"'
QUANTILES = (0.5, 0.99)
OPENED = "istio_tcp_connections_opened_total"
FAILED = "istio_tcp_connections_failed_total"
RECEIVED = "istio_tcp_received_bytes_total"
SENT = "istio_tcp_sent_bytes_total"
DURATION = "nodemesh_tcp_connection_duration_seconds"
CONNECT = "nodemesh_upstream_connect_duration_seconds"


def output_dir() -> Path:
    return Path(str(resources.files("nodemesh.telemetry") / "grafana"))


def query(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend)


def _legend(by: str) -> str:
    """``{{a}} {{b}}`` for the labels ``a, b``: a series is named by what it is summed by."""
    return " ".join("{{%s}}" % label.strip() for label in by.split(",") if label.strip())


def rate(metric: str, selector: str = "") -> str:
    return f"rate({metric}{{{selector}}}{RATE})" if selector else f"rate({metric}{RATE})"


def summed(inner: str, by: str, suffix: str = "") -> prometheus.Dataquery:
    """``sum by (by) (inner)``, each series named by its ``by`` labels (and ``suffix``)."""
    return query(f"sum by ({by}) ({inner})", f"{_legend(by)} {suffix}".strip())


def histogram(metric: str, selector: str, by: str = "") -> list[prometheus.Dataquery]:
    """p50 and p99 of a histogram, per ``by`` labels (comma-separated) when given."""
    return [query(f"histogram_quantile({q}, sum by ({', '.join(filter(None, ('le', by)))}) "
                  f"({rate(metric + '_bucket', selector)}))", f"p{round(q * 100)} {_legend(by)}".strip())
            for q in QUANTILES]


def _with_targets(panel: Builder, title: str, description: str, unit: str,
                  targets: list[prometheus.Dataquery]) -> Builder:
    for ref_id, target in zip(string.ascii_uppercase, targets):
        panel.with_target(target.ref_id(ref_id))
    return panel.title(title).description(description).datasource(DATASOURCE).unit(unit)


def graph(title: str, description: str, unit: str, *targets: prometheus.Dataquery) -> timeseries.Panel:
    return _with_targets(timeseries.Panel(), title, description, unit, list(targets)).height(8).span(12)


def number(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    """A single value: the latest of ``expr``."""
    return _with_targets(stat.Panel(), title, description, unit, [query(expr).instant()]).height(4).span(4)


def listing(title: str, description: str, expr: str) -> table.Panel:
    """A table of the series of ``expr`` at the end of the range, one row per label set."""
    target = query(expr).instant().format(PromQueryFormat.TABLE)
    return _with_targets(table.Panel(), title, description, "short", [target]).height(6).span(12)


def _variable(name: str, label: str, values: str, all_values: bool) -> dashboard.QueryVariable:
    """A variable listing label values; with ``all_values``, several or all may be chosen
    (All is the regex ``.*``, so panels filter with ``=~``)."""
    variable = (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE).query(values)
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
    if all_values:
        variable.multi(True).include_all(True).all_value(".*")
    return variable


def namespace_variable(all_values: bool) -> dashboard.QueryVariable:
    return _variable("namespace", "Namespace",
                     f"label_values({OPENED}, destination_workload_namespace)",
                     all_values)


def new_dashboard(uid: str, title: str, description: str,
                  *variables: dashboard.QueryVariable) -> dashboard.Dashboard:
    board = (dashboard.Dashboard(title).uid(uid).description(description).tags([TAG])
             .time("now-30m", "now").refresh("10s").tooltip(DashboardCursorSync.CROSSHAIR)
             .link(dashboard.DashboardLink("nodemesh").type(DashboardLinkType.DASHBOARDS)
                   .tags([TAG]).as_dropdown(True).include_vars(True).keep_time(True))
             .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                            .type("prometheus")))
    for variable in variables:
        board.with_variable(variable)
    return board


def _by_security_policy(title: str, selector: str) -> timeseries.Panel:
    return graph(title, "mutual_tls: through the mesh; none: plaintext from outside it.", "cps",
                 summed(rate(OPENED, selector), "connection_security_policy"))


def _bytes(title: str, description: str, selector: str, by: str) -> timeseries.Panel:
    return graph(title, description, "Bps", summed(rate(RECEIVED, selector), by, "received"),
                 summed(rate(SENT, selector), by, "sent"))


def _mtls_share(selector: str) -> str:
    mtls = f'{selector}, connection_security_policy="mutual_tls"'
    return f"sum({rate(OPENED, mtls)}) / sum({rate(OPENED, selector)})"


def mesh() -> dashboard.Dashboard:
    received = 'reporter="destination", destination_workload_namespace=~"$namespace"'
    sent = 'reporter="source", destination_service_namespace=~"$namespace"'
    return (new_dashboard("nodemesh-mesh", "nodemesh / Mesh",
                          "Every service of the mesh: connections, failures, bytes, mutual TLS.",
                          namespace_variable(all_values=True))
            .with_row(dashboard.Row("Mesh"))
            .with_panel(number("Connections / s", "Connections the destination agents handled.", "cps",
                               f"sum({rate(OPENED, received)})"))
            .with_panel(number("Connections in range", "Connections over the dashboard's time range.",
                               "short", f"sum(increase({OPENED}{{{received}}}[$__range]))"))
            .with_panel(number("Failed / s", "Connections that failed, as the clients' agents saw them.",
                               "cps", f"sum({rate(FAILED, sent)})"))
            .with_panel(number("Mutual TLS", "Share of the connections that arrived over mutual TLS.",
                               "percentunit", _mtls_share(received)))
            .with_panel(number("Agents ready", "Node agents answering ready.", "short",
                               "sum(nodemesh_agent_ready)"))
            .with_panel(number("Agents connected", "Node agents holding a config stream to the controller.",
                               "short", "sum(nodemesh_controller_connected_agents)"))
            .with_row(dashboard.Row("Services"))
            .with_panel(graph("Connections by service", "Opened per second, at the destination.", "cps",
                              summed(rate(OPENED, received), "destination_service")))
            .with_panel(graph("Open connections by service", "Opened and not yet closed.", "short",
                              query(f"sum by (destination_service) ({OPENED}{{{received}}}) - sum by "
                                    f"(destination_service) (istio_tcp_connections_closed_total{{{received}}})",
                                    _legend("destination_service"))))
            .with_panel(graph("Failed connections by service",
                              "Per response flag, as the clients' agents saw them.", "cps",
                              summed(rate(FAILED, sent), "destination_service, response_flags")))
            .with_panel(_bytes("Bytes by service", "Received from the clients and sent back to them.",
                               received, "destination_service"))
            .with_panel(_by_security_policy("Connections by security policy", received))
            .with_panel(graph("Connection duration", "How long connections lived, per service.", "s",
                              *histogram(DURATION, received, "destination_service")))
            .with_panel(graph("Upstream connect latency", "From the agent's connect to the upstream's "
                              "answer, by path (hbone, local, direct, plaintext).", "s",
                              *histogram(CONNECT, 'destination_service=~".*\\\\.$namespace\\\\..*"', "via"))))


def workload() -> dashboard.Dashboard:
    inbound = ('reporter="destination", destination_workload_namespace=~"$namespace", '
               'destination_workload=~"$workload"')
    outbound = 'reporter="source", source_workload_namespace=~"$namespace", source_workload=~"$workload"'
    workloads = _variable("workload", "Workload",
                          f'label_values({OPENED}{{destination_workload_namespace=~"$namespace"}}, '
                          "destination_workload)", all_values=False)
    return (new_dashboard("nodemesh-workload", "nodemesh / Workload",
                          "One workload: who connects to it, what it connects to, and how that goes.",
                          namespace_variable(all_values=False), workloads)
            .with_row(dashboard.Row("Inbound"))
            .with_panel(number("Inbound connections / s", "Connections to the workload.", "cps",
                               f"sum({rate(OPENED, inbound)})"))
            .with_panel(number("Inbound mutual TLS", "Share that arrived over mutual TLS.", "percentunit",
                               _mtls_share(inbound)))
            .with_panel(number("Inbound failed / s", "Connections to the workload that failed.", "cps",
                               f"sum({rate(FAILED, inbound)})"))
            .with_panel(graph("Inbound connections by source", "Opened per second, by client workload.", "cps",
                              summed(rate(OPENED, inbound), "source_workload, source_workload_namespace")))
            .with_panel(_by_security_policy("Inbound connections by security policy", inbound))
            .with_panel(_bytes("Inbound bytes", "Received from the clients and sent back, by client.",
                               inbound, "source_workload"))
            .with_panel(graph("Inbound failures", "By response flag.", "cps",
                              summed(rate(FAILED, inbound), "response_flags")))
            .with_panel(graph("Inbound connection duration", "How long connections to the workload lived.", "s",
                              *histogram(DURATION, inbound)))
            .with_row(dashboard.Row("Outbound"))
            .with_panel(graph("Outbound connections by service", "Opened per second, by destination.", "cps",
                              summed(rate(OPENED, outbound), "destination_service")))
            .with_panel(graph("Outbound failures by service", "By destination and response flag.", "cps",
                              summed(rate(FAILED, outbound), "destination_service, response_flags")))
            # the source agent's "received" is what it received from this workload, its client
            .with_panel(graph("Outbound bytes", "Sent to each destination and received from it.", "Bps",
                              summed(rate(RECEIVED, outbound), "destination_service", "sent"),
                              summed(rate(SENT, outbound), "destination_service", "received")))
            .with_panel(graph("Outbound connection duration", "How long the workload's connections lived.", "s",
                              *histogram(DURATION, outbound, "destination_service"))))


def health() -> dashboard.Dashboard:
    nodes = _variable("node", "Node", 'label_values(up{job="nodemesh-agent"}, node)', all_values=True)
    expiry = f"nodemesh_certificate_expiry_timestamp_seconds{{{AGENT}}}"
    return (new_dashboard("nodemesh-health", "nodemesh / Agents and controller",
                          "The node agents and the controller: readiness, config, tunnels, certificates, "
                          "BPF maps, the event loop and the processes.", nodes)
            .with_row(dashboard.Row("Agents"))
            .with_panel(number("Agents up", "Agents Prometheus scrapes.", "short", f"sum(up{{{AGENT}}})"))
            .with_panel(number("Agents ready", "Agents answering ready.", "short",
                               f"sum(nodemesh_agent_ready{{{AGENT}}})"))
            .with_panel(number("Enrolled pods", "Meshed pods the agents serve.", "short",
                               f"sum(nodemesh_enrolled_pods{{{AGENT}}})"))
            .with_panel(number("Earliest certificate expiry", "Time left on the workload certificate that "
                               "expires first.", "dtdurations", f"min({expiry}) - time()"))
            .with_panel(number("Config streams", "Agents connected to the controller.", "short",
                               f"sum(nodemesh_xds_connected{{{AGENT}}})"))
            .with_panel(number("Live tunnels", "HBONE tunnels, both directions.", "short",
                               f"sum(nodemesh_tunnels{{{AGENT}}})"))
            .with_panel(graph("Pods", "Enrolled, and waiting to be.", "short",
                              summed(f"nodemesh_enrolled_pods{{{AGENT}}}", "node", "enrolled"),
                              summed(f"nodemesh_pending_pods{{{AGENT}}}", "node", "pending")))
            .with_panel(listing("Versions", "What runs where (istio_build).",
                                "sum by (component, tag, node) (istio_build)"))
            .with_row(dashboard.Row("Config (xDS)"))
            .with_panel(graph("Config version", "Each agent's against the controller's.", "short",
                              query(f"max by (node) (nodemesh_xds_config_version{{{AGENT}}})", _legend("node")),
                              query("max(nodemesh_controller_config_version)", "controller")))
            .with_panel(graph("Config updates", "Accepted and rejected, and stream disconnects.", "ops",
                              summed(rate("nodemesh_xds_updates_total", AGENT), "node, result"),
                              summed(rate("nodemesh_xds_disconnects_total", AGENT), "node", "disconnects")))
            .with_row(dashboard.Row("Tunnels and certificates"))
            .with_panel(graph("Tunnels", "Live HBONE tunnels (TLS connections), by direction.", "short",
                              summed(f"nodemesh_tunnels{{{AGENT}}}", "node, direction")))
            .with_panel(graph("Tunnel streams", "Connections carried by the tunnels.", "short",
                              summed(f"nodemesh_tunnel_streams{{{AGENT}}}", "node, direction")))
            .with_panel(graph("TLS handshakes", "By direction and result (ok, or how it failed).", "ops",
                              summed(rate("nodemesh_tls_handshakes_total", AGENT), "node, direction, result")))
            .with_panel(graph("TLS handshake duration", "Of the tunnels' handshakes.", "s",
                              *histogram("nodemesh_tls_handshake_duration_seconds", AGENT, "node, direction")))
            .with_panel(graph("Certificate time left", "Per workload identity: renewed at half life.",
                              "dtdurations",
                              query(f"min by (node, identity) ({expiry}) - time()", _legend("node, identity"))))
            .with_panel(graph("Upstream connect latency", "By path (hbone, local, direct, plaintext).", "s",
                              *histogram(CONNECT, AGENT, "node, via")))
            .with_row(dashboard.Row("Agent process"))
            .with_panel(graph("BPF map occupancy", "Entries against capacity: a full map stops enrollment.",
                              "percentunit",
                              query(f"max by (node, map) (nodemesh_bpf_map_entries{{{AGENT}}} "
                                    f"/ nodemesh_bpf_map_capacity{{{AGENT}}})", _legend("node, map"))))
            .with_panel(graph("Event loop lag", "How late the proxy's loop runs its callbacks.", "s",
                              *histogram("nodemesh_event_loop_lag_seconds", AGENT, "node")))
            .with_panel(graph("CPU", "Of one core.", "percentunit",
                              summed(rate("process_cpu_seconds_total", AGENT), "node")))
            .with_panel(graph("Memory", "Resident set size.", "bytes",
                              summed(f"process_resident_memory_bytes{{{AGENT}}}", "node")))
            .with_panel(graph("Open file descriptors", "Sockets included: two or more per connection.", "short",
                              summed(f"process_open_fds{{{AGENT}}}", "node")))
            .with_row(dashboard.Row("Controller"))
            .with_panel(number("Controller up", "Controllers Prometheus scrapes.", "short",
                               f"sum(up{{{CONTROLLER}}})"))
            .with_panel(number("Connected agents", "Agents holding a config stream.", "short",
                               "sum(nodemesh_controller_connected_agents)"))
            .with_panel(number("Controller config version", "Its latest model version.", "short",
                               "max(nodemesh_controller_config_version)"))
            .with_panel(graph("Config pushes", "Snapshots and deltas sent to agents.", "ops",
                              summed(rate("nodemesh_controller_pushes_total"), "type")))
            .with_panel(graph("Push latency", "From a model version's creation to the agent's ack.", "s",
                              *histogram("nodemesh_controller_push_duration_seconds", CONTROLLER)))
            .with_panel(graph("Acks", "Config versions the agents accepted or rejected.", "ops",
                              summed(rate("nodemesh_controller_acks_total"), "result")))
            .with_panel(graph("Certificates", "Signed, and refused (by reason; 0 while none was).", "ops",
                              query(f"sum({rate('nodemesh_controller_certificates_signed_total')})", "signed"),
                              query(f"sum by (reason) ({rate('nodemesh_controller_certificate_refusals_total')})"
                                    " or vector(0)", "refused {{reason}}")))
            .with_panel(graph("Controller CPU", "Of one core.", "percentunit",
                              query(f"sum({rate('process_cpu_seconds_total', CONTROLLER)})", "cpu")))
            .with_panel(graph("Controller memory", "Resident set size.", "bytes",
                              query(f"sum(process_resident_memory_bytes{{{CONTROLLER}}})", "rss"))))


DASHBOARDS = {"mesh": mesh, "workload": workload, "health": health}


def render(board: dashboard.Dashboard) -> str:
    """The dashboard's JSON, its panels numbered in order (the SDK leaves every id at 0)."""
    built = board.build()
    for index, panel in enumerate(built.panels or [], start=1):
        panel.id_val = index
    return json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every dashboard as ``<name>.json`` into ``directory``; the paths written."""
    written = []
    for name, build in DASHBOARDS.items():
        path = directory / f"{name}.json"
        path.write_text(render(build()))
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write(output_dir()):
        print(written)
