"""Where a simulated cluster keeps its things: namespace, interface, cgroup and file names.

Every name a sim uses is derived here from the sim's name, so that ``down`` can find and remove
all of a sim's objects by name alone, even when ``up`` was killed before it wrote down what it
made. Sim names are restricted to lowercase letters and digits: with no dash in them, the
prefix ``nm-<sim>-`` of one sim can never be the prefix of another's names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nodemesh import cgroups
from nodemesh.errors import UserError

DEFAULT_SIM = "nodemesh"
RUN_ROOT = Path("/run/nodemesh/sim")
NETNS_DIR = Path("/run/netns")
BPFFS = Path("/sys/fs/bpf")

# The simulated "L2 network" the nodes and the controller share, and the controller's place on it.
BRIDGE_PREFIXLEN = 24
CONTROLLER_IP = "172.30.0.254"
CONTROLLER_PORT = 15012

# Interface names inside the sim's namespaces; each namespace has its own, so these repeat freely.
BRIDGE_IFNAME = "br0"
UPLINK_IFNAME = "eth0"  # a node's or the controller's leg on the bridge, a pod's leg to its node
CONTROLLER_PORT_IFNAME = "cp0"  # the controller's port on the bridge

_SIM_NAME = re.compile(r"[a-z0-9]{1,16}")
IFNAMSIZ = 15  # the kernel's limit on interface names (16 bytes with the NUL)


class SimError(UserError):
    """Something a user can fix; the message says what."""


def _short_hash(key: str) -> str:
    return hashlib.blake2s(key.encode(), digest_size=5).hexdigest()


def node_port_ifname(node: str) -> str:
    """The bridge's port towards ``node`` (in the bridge namespace)."""
    return f"n{_short_hash(node)}"


def pod_port_ifname(namespace: str, pod: str) -> str:
    """The node's port towards a pod (in the node namespace), what the pod routes through."""
    return f"p{_short_hash(f'{namespace}/{pod}')}"


@dataclass(frozen=True)
class SimNames:
    """All the names of one simulated cluster."""

    sim: str = DEFAULT_SIM

    def __post_init__(self) -> None:
        if not _SIM_NAME.fullmatch(self.sim):
            raise SimError(f"invalid sim name {self.sim!r}: use 1 to 16 lowercase letters and digits "
                           "(no dashes: names of one sim must never be prefixes of another's)")

    # files
    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.sim

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def controller_state_dir(self) -> Path:
        return self.run_dir / "controller"

    @property
    def tokens_dir(self) -> Path:
        """Node join tokens: one file per node for its agent, and their hashes for the controller."""
        return self.run_dir / "tokens"

    def node_token(self, node: str) -> Path:
        return self.tokens_dir / f"{node}.token"

    @property
    def node_tokens(self) -> Path:
        """The controller's --node-tokens file."""
        return self.tokens_dir / "node-tokens.json"

    def pod_log(self, namespace: str, pod: str, container: str) -> Path:
        return self.logs_dir / "pods" / f"{namespace}.{pod}.{container}.log"

    def component_log(self, component: str) -> Path:
        """``controller`` -> logs/controller.log, ``agent/node-a`` -> logs/agent.node-a.log."""
        return self.logs_dir / f"{component.replace('/', '.')}.log"

    @property
    def prometheus_dir(self) -> Path:
        """The sim's Prometheus: its generated config and its data (``sim up --prometheus``)."""
        return self.run_dir / "prometheus"

    @property
    def bpf_dir(self) -> Path:
        """Where the sim's agents pin BPF objects (``down`` removes it, and with it the objects)."""
        return BPFFS / f"nodemesh-{self.sim}"

    def node_bpf_dir(self, node: str) -> Path:
        """The node agent's --bpffs-dir: what outlives the agent (its plaintext capture links)."""
        return self.bpf_dir / node

    # network namespaces
    @property
    def _prefix(self) -> str:
        return f"nm-{self.sim}-"

    @property
    def bridge_netns(self) -> str:
        return f"{self._prefix}net"

    @property
    def controller_netns(self) -> str:
        return f"{self._prefix}cp"

    def node_netns(self, node: str) -> str:
        return f"{self._prefix}node-{node}"

    def pod_netns(self, namespace: str, pod: str) -> str:
        return f"{self._prefix}pod-{namespace}.{pod}"

    @property
    def pod_netns_template(self) -> str:
        """What the agent's --pod-netns-template gets: a path with {namespace} and {name}."""
        return str(NETNS_DIR / self.pod_netns("{namespace}", "{name}"))

    def owns_netns(self, name: str) -> bool:
        """Whether a netns of that name belongs to this sim (``down`` removes it)."""
        return name in (self.bridge_netns, self.controller_netns) or name.startswith(
            (f"{self._prefix}node-", f"{self._prefix}pod-"))

    @staticmethod
    def netns_path(name: str) -> str:
        return str(NETNS_DIR / name)

    # cgroups
    @cached_property
    def cgroup_root(self) -> Path:
        root = cgroups.unified_root()
        if root is None:
            raise SimError("cgroup v2 (the unified hierarchy) is not mounted: run `nodemesh check`")
        return root / f"nodemesh-{self.sim}"

    @property
    def controller_cgroup(self) -> Path:
        return self.cgroup_root / "controller"

    @property
    def prometheus_cgroup(self) -> Path:
        """Prometheus and its port forward: not in any node, but the sim's all the same."""
        return self.cgroup_root / "prometheus"

    def node_cgroup(self, node: str) -> Path:
        """Where the node's agent attaches its programs (like a real node's root cgroup)."""
        return self.cgroup_root / node

    def agent_cgroup(self, node: str) -> Path:
        return self.node_cgroup(node) / "agent"

    def pod_cgroup(self, node: str, namespace: str, pod: str) -> Path:
        return self.node_cgroup(node) / "pods" / f"{namespace}.{pod}"

    # `sim up --kube`: the control plane's files and each node's sim kubelet
    @property
    def kube_dir(self) -> Path:
        """The control plane's PKI, kubeconfigs and etcd data."""
        return self.run_dir / "kube"

    @property
    def admin_kubeconfig(self) -> Path:
        """What `sim up --kube` prints for `export KUBECONFIG=...`."""
        return self.run_dir / "kubeconfig"

    def kubelet_dir(self, node: str) -> Path:
        """A node's sim kubelet: its pods' volumes and its pod-IP assignments."""
        return self.run_dir / "kubelet" / node

    def kubelet_cgroup(self, node: str) -> Path:
        return self.node_cgroup(node) / "kubelet"
