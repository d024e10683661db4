import pytest

from nodemesh.tools.sim.names import (
    IFNAMSIZ,
    SimError,
    SimNames,
    node_port_ifname,
    pod_port_ifname,
)


@pytest.mark.parametrize("bad", ["", "with-dash", "Upper", "a" * 17, "dot.ted", "sl/ash"])
def test_sim_names_are_letters_and_digits(bad):
    with pytest.raises(SimError, match="invalid sim name"):
        SimNames(bad)


def test_names_follow_the_shared_conventions():
    names = SimNames("demo")
    assert names.bridge_netns == "nm-demo-net"
    assert names.controller_netns == "nm-demo-cp"
    assert names.node_netns("node-a") == "nm-demo-node-node-a"
    assert names.pod_netns("shop", "client") == "nm-demo-pod-shop.client"
    assert str(names.state_path) == "/run/nodemesh/sim/demo/state.json"
    assert str(names.controller_state_dir) == "/run/nodemesh/sim/demo/controller"
    assert str(names.pod_log("shop", "client", "main")) == "/run/nodemesh/sim/demo/logs/pods/shop.client.main.log"
    assert names.component_log("agent/node-a").name == "agent.node-a.log"
    assert str(names.bpf_dir) == "/sys/fs/bpf/nodemesh-demo"


def test_the_agents_template_names_the_pod_netns():
    names = SimNames("demo")
    assert names.pod_netns_template.format(namespace="shop", name="client") == \
        names.netns_path(names.pod_netns("shop", "client"))


def test_a_sim_owns_its_namespaces_and_no_other_sims():
    t1 = SimNames("t1")
    for other in (SimNames("t11"), SimNames("t")):
        for name in (other.bridge_netns, other.controller_netns, other.node_netns("n"),
                     other.pod_netns("ns", "p")):
            assert not t1.owns_netns(name)
    for name in (t1.bridge_netns, t1.controller_netns, t1.node_netns("n"), t1.pod_netns("ns", "p")):
        assert t1.owns_netns(name)
    assert not t1.owns_netns("nm-t1-other")


def test_interface_names_fit_the_kernel_limit_and_differ():
    names = {pod_port_ifname("namespace-" * 6, f"pod-{i}" * 30) for i in range(200)}
    names |= {node_port_ifname(f"node-{i}") for i in range(200)}
    assert len(names) == 400
    assert all(len(n) <= IFNAMSIZ for n in names)
    assert pod_port_ifname("a", "b.c") != pod_port_ifname("a.b", "c")
