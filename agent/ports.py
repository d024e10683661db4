"""The agent's well-known ports and socket mark: the bottom layer every other agent package uses.

Istio ambient's numbers, so that users' tooling and expectations carry over.
"""

OUTBOUND_PORT = 15001  # in each meshed pod: connections the steering programs redirect
PLAINTEXT_PORT = 15006  # in each meshed pod: plaintext from outside the mesh (bpf/capture.c)
HBONE_PORT = 15008  # in each meshed pod: HBONE (HTTP/2 CONNECT over mutual TLS) from other nodes
ADMIN_PORT = 15000  # node: admin API, localhost only
METRICS_PORT = 15020  # node: Prometheus /metrics and /stats/prometheus
READINESS_PORT = 15021  # node: /healthz/ready

# SO_MARK on the agent's own sockets; the programs never steer a socket carrying it.
AGENT_MARK = 0x4E4D  # "NM"
