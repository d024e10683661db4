"""``nodemesh demo --kube``: the Kubernetes path, as a user installs the mesh on a cluster.

A real control plane (``sim up --kube``: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler; a sim kubelet and kube-proxy per node) stands in for the cluster. The mesh is
installed with ``kubectl apply -k daemonset/``, the same manifests a user applies: the sim
kubelets run the controller Deployment and the agent DaemonSet from them. Then an application
that knows nothing of the mesh, a namespace label that meshes it, a client's connections through
the agents, and a scale-up that the agents follow. Tears down unless ``--keep``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from nodemesh.tools.admin_client import fetch
from nodemesh.tools.sim.kubectl import SYSTEM_NAMESPACE, Kubectl, wait_for
from nodemesh.tools.sim.names import SimError, SimNames

NODES = 3
WAIT = 180.0  # for pods to be scheduled, started and Ready on a busy 2-core machine
CONNECTIONS = 20
# A pod is enrolled about a second after it starts (the controller sees its IP, its agent its
# process); with no CNI plugin holding it back until then, a client waits before connecting.
ENROLL_WAIT = 5

APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: catalog, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: catalog}}
  template:
    metadata: {labels: {app: catalog}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: server
        image: ghcr.io/nodemesh/nodemesh:0.1.0
        command: [python3, -m, nodemesh.tools.apps.server, --port, "8080"]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  selector: {app: catalog}
  ports: [{name: tcp, port: 80, targetPort: http}]
"""


def client_pod(name: str, count: int) -> str:
    """A pod running the example client against the Service (its address from the service links)."""
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{app: client}}}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: ghcr.io/nodemesh/nodemesh:0.1.0
    command: [sh, -c, 'sleep {ENROLL_WAIT}; exec python3 -m nodemesh.tools.apps.client
              "$CATALOG_SERVICE_HOST:$CATALOG_SERVICE_PORT" --count {count} -o json']
"""


class KubeDemo:
    def __init__(self, sim: str) -> None:
        self.names = SimNames(sim)
        self.kubectl = Kubectl(self.names)
        self.clients = 0

    def run(self, keep: bool) -> None:
        from nodemesh.tools.sim.cleanup import down
        from nodemesh.tools.sim.kube import up_kube

        say = click.echo
        began = time.monotonic()
        say(f"nodemesh demo --kube: a real Kubernetes control plane driving {NODES} simulated nodes")
        up_kube(self.names, lambda line: say(f"  {line}"), NODES, 0)  # leaves nothing if it fails
        say(f"  up in {time.monotonic() - began:.0f} s; export KUBECONFIG={self.names.admin_kubeconfig}")
        try:
            self.show()
        except BaseException:
            if keep:
                say(f"\nThe cluster stays up (--keep): `nodemesh sim down --name {self.names.sim}` removes it.")
            else:
                down(self.names)
            raise
        if keep:
            say(f"\nThe cluster stays up (--keep). Try:\n"
                f"  export KUBECONFIG={self.names.admin_kubeconfig}\n"
                f"  kubectl get pods -A -o wide\n"
                f"  kubectl scale -n shop deployment/catalog --replicas=3\n"
                f"  nodemesh sim status --name {self.names.sim}\n"
                f"  nodemesh sim down --name {self.names.sim}")
        else:
            say("\nTearing down...")
            down(self.names)
            say("done: nothing left behind.")

    def show(self) -> None:
        say = click.echo
        k = self.kubectl
        began = time.monotonic()
        say("\n1. kubectl apply -k daemonset/ (the manifests a cluster gets; the sim kubelets run "
            "their command and arguments unchanged)")
        k.install_mesh()
        wait_for(lambda: k.ready("deployment", "nodemesh-controller"), WAIT, "the controller replicas Ready")
        wait_for(lambda: k.ready("daemonset", "nodemesh-agent"), WAIT, "an agent Ready on every node")
        say(f"   Ready in {time.monotonic() - began:.0f} s:")
        for pod in k.get("pods", "-n", SYSTEM_NAMESPACE)["items"]:
            say(f"     {pod['metadata']['name']:40} on {pod['spec']['nodeName']}  {pod['status'].get('podIP')}")

        say("\n2. an application, not meshed yet: namespace shop, Deployment catalog (2 replicas), "
            "Service catalog")
        k.run("apply", "-f", "-", input=APP)
        servers = wait_for(lambda: len(p := self.ready_servers()) == 2 and p, WAIT, "2 catalog pods Ready")
        tally = self.client(10)
        say(f"   a client pod's 10 connections: {tally['ok']} answered, through kube-proxy; "
            f"the agents relayed {self.relayed(tally['node'])}")

        say("\n3. kubectl label namespace shop nodemesh.io/mesh=enabled")
        k.run("label", "namespace", "shop", "nodemesh.io/mesh=enabled")
        for name, node in servers.items():
            wait_for(lambda: f"shop/{name}" in self.enrolled(node), WAIT, f"{name} enrolled")
            say(f"   {name} on {node}: enrolled by its node's agent (steered, and served with its own certificate)")
        before = self.relayed_all()
        tally = self.client(CONNECTIONS)
        say(f"   a new client pod on {tally['node']}: {tally['ok']} of {CONNECTIONS} answered by "
            + ", ".join(f"{name} ({n})" for name, n in sorted(tally["servers"].items())))
        say(f"   its agent steered {self.relayed(tally['node']) - before[tally['node']]} of them into "
            "mutual-TLS tunnels (or straight to a pod on its own node)")

        began = time.monotonic()
        say("\n4. kubectl scale -n shop deployment/catalog --replicas=4")
        k.run("scale", "-n", "shop", "deployment/catalog", "--replicas=4")
        servers = wait_for(lambda: len(p := self.ready_servers()) == 4 and p, WAIT, "4 catalog pods Ready")
        wait_for(lambda: set(self.client(40)["servers"]) == set(servers), WAIT,
                 "connections to all 4 replicas")
        took = time.monotonic() - began
        tally = self.client(40)  # with every agent's view settled: the round robin's own shares
        say(f"   all 4 answering {took:.0f} s after the scale, a client pod's "
            f"{ENROLL_WAIT} s wait included (the real scheduler "
            "placed them, the controller-manager made their EndpointSlice, the agents got it): "
            + ", ".join(f"{name} ({n})" for name, n in sorted(tally["servers"].items())))

    # -- what the demo looks at -----------------------------------------------------------
    def ready_servers(self) -> dict[str, str]:
        """name -> node of the catalog pods Running and Ready."""
        pods = self.kubectl.get("pods", "-n", "shop", "-l", "app=catalog")["items"]
        return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])}

    def client(self, count: int) -> dict[str, Any]:
        """A client pod's tally, and the node it ran on."""
        self.clients += 1
        name = f"client{self.clients}"
        pod, log = self.kubectl.run_pod("shop", name, client_pod(name, count), "client", WAIT)
        try:
            tally = json.loads(log[-1])
        except (IndexError, json.JSONDecodeError):
            raise SimError(f"client pod shop/{name} ended {pod['status'].get('phase')} without its "
                           f"tally: see {self.names.pod_log('shop', name, 'client')}") from None
        return {**tally, "node": pod["spec"]["nodeName"]}

    def admin(self, node: str, path: str) -> Any:
        return fetch(SimNames.netns_path(self.names.node_netns(node)), path)

    def enrolled(self, node: str) -> set[str]:
        return {e["pod"] for e in self.admin(node, "/config_dump")["enrolled"]}

    def relayed(self, node: str) -> int:
        """Connections the node's agent relayed out of its pods to shop's catalog pods."""
        return sum(e["count"] for e in self.admin(node, "/connections")["by_destination"]
                   if e["direction"] == "outbound" and e["destination"].startswith("shop/catalog"))

    def relayed_all(self) -> dict[str, int]:
        return {node: self.relayed(node) for node in self.kubectl_nodes()}

    def kubectl_nodes(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.kubectl.get("nodes")["items"]]
