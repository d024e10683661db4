"""Workload certificates held by the agent: keys made here, signed by the controller, renewed at half life."""
