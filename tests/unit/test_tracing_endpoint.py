"""The OTLP endpoint a user gives: ``HOST:PORT`` or a clear error, at start or as the flag's usage error."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from nodemesh.agent.telemetry.tracing import EndpointError, SpanExporter, check_endpoint
from nodemesh.errors import UserError
from nodemesh.flags import checked_by


@pytest.mark.parametrize("endpoint", [
    "", "collector", "collector:", ":4317", "collector:0", "collector:65536", "collector:43x7",
    "http://collector:4317", "fd00::5:4317", "collector :4317", "-collector:4317", "a/b:4317",
    "[fd00:::5]:4317", "[collector]:4317", "collector:\u0664\u0663\u0661\u0667",
])
def test_an_endpoint_that_is_not_host_port_is_a_user_error_before_anything_starts(endpoint: str) -> None:
    with pytest.raises(EndpointError, match="is not HOST:PORT"):
        SpanExporter(endpoint, "node-a")


def test_a_url_is_told_to_drop_its_scheme() -> None:
    with pytest.raises(EndpointError, match="without a scheme"):
        check_endpoint("http://collector:4317")


@pytest.mark.parametrize("endpoint", [
    "otel-collector.observability:4317", "10.0.0.5:4317", "[fd00::5]:4317", "localhost:1", "my_host:65535",
])
def test_host_port_endpoints_are_taken_as_given(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint


def test_as_a_flag_it_is_clicks_usage_error_and_elsewhere_a_user_error() -> None:
    @click.command()
    @click.option("--otlp-endpoint", callback=checked_by(check_endpoint))
    def command(otlp_endpoint: str) -> None:
        click.echo(otlp_endpoint)

    result = CliRunner().invoke(command, ["--otlp-endpoint", "collector"])
    assert result.exit_code == 2 and "--otlp-endpoint" in result.output and "HOST:PORT" in result.output
    assert CliRunner().invoke(command, ["--otlp-endpoint", "c:4317"]).output == "c:4317\n"
    assert issubclass(EndpointError, UserError)
