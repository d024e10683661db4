"""The kernel objects of a simulated cluster: network namespaces, links, addresses, routes, cgroups.

Layout (every address lives inside a namespace the sim creates; the host's netns gets nothing)::

    nm-<sim>-net    bridge br0; one port per node (n<hash>) and one for the controller (cp0)
    nm-<sim>-cp     eth0 172.30.0.254/24: the controller
    nm-<sim>-node-X eth0 <node ip>/24 on the bridge; forwarding on, rp_filter off; a route to
                    every other node's pod CIDR via that node's IP; per pod a port p<hash>
                    holding the gateway <pod CIDR>.1/32 and a /32 route to the pod
    nm-<sim>-pod-N  eth0 <pod ip>/32, a link route to the gateway and the default route via it

A pod reaches another pod by plain routing: pod -> its node -> (bridge) -> the other node ->
the pod. Service VIPs are deliberately routed nowhere: a connection to a VIP works only when the
mesh steers it (the agent's connect hook rewrites it to a real endpoint), which makes tests say
truthfully whether the mesh did its job.

cgroups: ``<unified>/nodemesh-<sim>/`` holds ``controller/`` and per node ``<node>/agent/`` and
``<node>/pods/<namespace>.<pod>/``; the agent attaches its programs at ``<node>/``.
"""

from __future__ import annotations

from pathlib import Path

from pyroute2 import IPRoute, netns

from nodemesh.netns import Netns
from nodemesh.tools.sim.names import (
    BRIDGE_IFNAME,
    BRIDGE_PREFIXLEN,
    CONTROLLER_IP,
    CONTROLLER_PORT_IFNAME,
    UPLINK_IFNAME,
    SimNames,
    node_port_ifname,
    pod_port_ifname,
)
from nodemesh.tools.sim.plan import ClusterPlan, NodePlan, PodPlan


def build(plan: ClusterPlan, names: SimNames) -> None:
    """Create the whole network and the cgroup tree of ``plan``; ``cleanup.down`` undoes it."""
    netns.create(names.bridge_netns)
    with IPRoute(netns=names.bridge_netns) as bridge:
        _up(bridge, "lo")
        bridge.link("add", ifname=BRIDGE_IFNAME, kind="bridge")
        _up(bridge, BRIDGE_IFNAME)
        _join_bridge(bridge, CONTROLLER_PORT_IFNAME, names.controller_netns, CONTROLLER_IP)
        for node in plan.nodes:
            _join_bridge(bridge, node_port_ifname(node.name), names.node_netns(node.name), node.ip,
                         router=True)
    for node in plan.nodes:
        _routes_to_other_nodes(plan, node, names)
        names.agent_cgroup(node.name).mkdir(parents=True, exist_ok=True)
    for pod in plan.pods:
        attach_pod(plan.node(pod.node), pod, names)
        names.pod_cgroup(pod.node, pod.namespace, pod.name).mkdir(parents=True, exist_ok=True)
    names.controller_cgroup.mkdir(parents=True, exist_ok=True)


def _up(ipr: IPRoute, ifname: str) -> int:
    index = ipr.link_lookup(ifname=ifname)[0]
    ipr.link("set", index=index, state="up")
    return index


def _write_sysctls(netns_name: str, values: dict[str, str]) -> None:
    """Set /proc/sys/net keys of a namespace: /proc/sys/net shows the opener's namespace."""
    with Netns(SimNames.netns_path(netns_name)) as ns, ns.entered():
        for key, value in values.items():
            Path("/proc/sys/net", key).write_text(value)


def _veth_to(ipr: IPRoute, ifname: str, peer_netns: str) -> int:
    """A veth pair: ``ifname`` here, ``eth0`` in ``peer_netns``; returns the local end's index."""
    ipr.link("add", ifname=ifname, kind="veth",
             peer={"ifname": UPLINK_IFNAME, "net_ns_fd": peer_netns})
    return _up(ipr, ifname)


def _join_bridge(bridge: IPRoute, port: str, peer_netns: str, address: str,
                 router: bool = False) -> None:
    """A new namespace ``peer_netns`` on the bridge at ``address``; ``router`` makes it forward."""
    netns.create(peer_netns)
    if router:
        # Before any link exists there, so that every interface inherits rp_filter off: packets
        # of remote pods arrive on eth0 while the pod's own route points at its veth.
        _write_sysctls(peer_netns, {"ipv4/ip_forward": "1", "ipv4/conf/all/rp_filter": "0",
                                    "ipv4/conf/default/rp_filter": "0"})
    index = _veth_to(bridge, port, peer_netns)
    bridge.link("set", index=index, master=bridge.link_lookup(ifname=BRIDGE_IFNAME)[0])
    with IPRoute(netns=peer_netns) as peer:
        _up(peer, "lo")
        peer.addr("add", index=_up(peer, UPLINK_IFNAME), address=address, prefixlen=BRIDGE_PREFIXLEN)


def route_pods_from_controller(plan: ClusterPlan, names: SimNames) -> None:
    """Routes from the controller's netns to every node's pod CIDR via that node (``sim up
    --kube``: pods reach the API server through the ``kubernetes`` Service unmasqueraded, so its
    answers go to pod IPs). The file mode needs none: only agents, on node IPs, talk to it."""
    with IPRoute(netns=names.controller_netns) as ipr:
        for node in plan.nodes:
            ipr.route("add", dst=node.pod_cidr, gateway=node.ip)


def route_services_from_nodes(plan: ClusterPlan, names: SimNames, service_cidr: str) -> None:
    """A route for ``service_cidr`` in every node's netns (``sim up --kube``), as a real node's
    default route: a host-network process's connect to a ClusterIP needs a route before
    kube-proxy's OUTPUT rules can rewrite it to an endpoint (else ENETUNREACH at once)."""
    for node in plan.nodes:
        with IPRoute(netns=names.node_netns(node.name)) as ipr:
            ipr.route("add", dst=service_cidr, oif=ipr.link_lookup(ifname=UPLINK_IFNAME)[0])


def _routes_to_other_nodes(plan: ClusterPlan, node: NodePlan, names: SimNames) -> None:
    with IPRoute(netns=names.node_netns(node.name)) as ipr:
        for other in plan.nodes:
            if other.name != node.name:
                ipr.route("add", dst=other.pod_cidr, gateway=other.ip)


def attach_pod(node: NodePlan, pod: PodPlan, names: SimNames) -> None:
    """The pod's netns, wired to its node: a veth, the gateway, the routes both ways."""
    pod_netns = names.pod_netns(pod.namespace, pod.name)
    netns.create(pod_netns)
    with IPRoute(netns=names.node_netns(node.name)) as ipr:
        index = _veth_to(ipr, pod_port_ifname(pod.namespace, pod.name), pod_netns)
        ipr.addr("add", index=index, address=node.gateway, prefixlen=32)
        ipr.route("add", dst=f"{pod.ip}/32", oif=index)
    with IPRoute(netns=pod_netns) as ipr:
        _up(ipr, "lo")
        index = _up(ipr, UPLINK_IFNAME)
        ipr.addr("add", index=index, address=pod.ip, prefixlen=32)
        ipr.route("add", dst=f"{node.gateway}/32", oif=index, scope="link")
        ipr.route("add", dst="0.0.0.0/0", gateway=node.gateway, oif=index)
