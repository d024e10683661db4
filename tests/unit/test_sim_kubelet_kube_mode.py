"""`sim up --kube` where it needs no kernel: its flags and its nodes' names, addresses and zones."""

import pytest
from click.testing import CliRunner

from nodemesh.tools.cli import main
from nodemesh.tools.sim.kube import node_plan
from nodemesh.tools.sim.names import SimError


@pytest.mark.parametrize("args", [[], ["-f", __file__, "--kube"]])
def test_up_takes_a_file_or_kube_not_both_nor_neither(args):
    result = CliRunner().invoke(main, ["sim", "up", "--name", "klcli", *args])
    assert result.exit_code == 2 and "give either -f FILE or --kube" in result.output


def test_nodes_pair_up_in_zones_with_the_controllers_addresses():
    plan = node_plan(3)
    assert [(n.name, n.ip, n.pod_cidr, zone) for n, zone in plan] == [
        ("node-a", "172.30.0.1", "10.10.1.0/24", "zone-1"),
        ("node-b", "172.30.0.2", "10.10.2.0/24", "zone-1"),
        ("node-c", "172.30.0.3", "10.10.3.0/24", "zone-2")]
    assert node_plan(5)[4][1] == "zone-3"


def test_too_many_nodes_are_refused():
    with pytest.raises(SimError, match="give 1 to 26 nodes"):
        node_plan(27)
