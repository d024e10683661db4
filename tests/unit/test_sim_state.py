import pytest

from nodemesh.tools.sim.names import SimError, SimNames
from nodemesh.tools.sim.state import ProcessRecord, SimState, load


def test_state_round_trips_through_json():
    state = SimState(sim="t1", file="/x.yaml", controller={"address": "172.30.0.254:15012"},
                     nodes={"n1": {"ip": "172.30.0.1"}},
                     processes={"agent/n1": ProcessRecord(argv=["nodemesh", "agent"], env={"A": "1"},
                                                          netns="/run/netns/x", cgroup="/cg", log="/l",
                                                          ready={"tcp": {"host": "h", "port": 1}},
                                                          pid=12, start_time=34)})
    assert SimState.from_json(state.to_json()) == state


def test_unknown_components_and_pods_are_named_with_what_exists():
    state = SimState(sim="t1", file="/x.yaml", pods={"shop/client": {}},
                     processes={"controller": ProcessRecord([], {}, "", "", "")})
    with pytest.raises(SimError, match=r"no component 'agent/x' \(it has: controller\)"):
        state.process("agent/x")
    with pytest.raises(SimError, match=r"no pod 'shop/nope' \(pods: shop/client\)"):
        state.pod("shop/nope")


def test_a_sim_that_is_not_up_says_how_to_start_it():
    with pytest.raises(SimError, match=r"sim .neverup. is not up .*`nodemesh sim up -f FILE --name neverup`"):
        load(SimNames("neverup"))
