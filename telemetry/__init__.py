"""What watches a mesh: Prometheus rules (prometheus/) and Grafana dashboards (grafana/).

A Python package only so that the files install with the code (package data): ``nodemesh sim
up --prometheus`` points its Prometheus at the rules installed here. docs/dashboards.md says
how to load them into your own Prometheus and Grafana.
"""
