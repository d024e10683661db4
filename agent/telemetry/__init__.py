"""Telemetry: Prometheus metrics, access logs and traces of what the agent relays."""
