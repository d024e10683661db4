"""The CA on a simulated cluster, as `sim up` wires it: from inside a node's namespace, with that
node's token file and the controller's CA root, an agent gets certificates for its own node's
workloads and nothing else; another node's token or no token gets nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nodemesh.controller.ca.store import root_path
from nodemesh.controller.kube.objects import load_file
from nodemesh.controller.nodeauth.tokens import NodeTokens
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.tools.sim.cluster import lay_out, start_components
from nodemesh.tools.sim.names import CONTROLLER_IP, CONTROLLER_PORT, SimNames
from nodemesh.tools.sim.plan import plan_from_file
from nodemesh.tools.sim.state import CONTROLLER
from nodemesh.tools.sim.tokens import write_tokens

pytestmark = pytest.mark.kernel

DEMO = Path(__file__).parents[2] / "tools" / "sim" / "examples" / "demo.yaml"

# What an agent does to get a certificate, run as a process in a node's network namespace.
SIGN = """
import json, sys
from pathlib import Path
from nodemesh.agent.controlplane.ca_client import CaClient, SignError
from nodemesh.agent.controlplane.channel import ControllerAccess, read_credentials
from nodemesh.identity import Identity, certificate_request, identity_of, new_key
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

target, root, token_file, uid, identity = sys.argv[1:]
root_pem, token = read_credentials(Path(root), Path(token_file))
client = CaClient(ControllerAccess(target, root_pem, token))
try:
    chain = client.sign(uid, certificate_request(new_key(), Identity.parse(identity)), 10)
except SignError as e:
    print(json.dumps({"error": e.code.name, "message": str(e)}))
else:
    leaf = x509.load_pem_x509_certificate(chain)
    print(json.dumps({"identity": str(identity_of(leaf.public_bytes(Encoding.DER)))}))
"""


def _sign_from(names: SimNames, node: str, token_file: Path, uid: str, identity: str) -> dict:
    out = subprocess.run(
        ["ip", "netns", "exec", names.node_netns(node), sys.executable, "-c", SIGN,
         f"{CONTROLLER_IP}:{CONTROLLER_PORT}", str(root_path(names.controller_state_dir)),
         str(token_file), uid, identity],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_agents_get_certificates_for_their_own_nodes_workloads_only(sim_names, tmp_path):
    names = sim_names("ca1")
    names.logs_dir.mkdir(parents=True)
    plan = plan_from_file(DEMO, names.controller_state_dir)
    write_tokens(names, [n.name for n in plan.nodes])
    state = lay_out(plan, names, DEMO)
    start_components(state, names, [CONTROLLER])

    # the tokens: root-only files, one per node, and the controller's file knows them by hash
    for node in ("node-a", "node-b"):
        assert stat.S_IMODE(os.stat(names.node_token(node)).st_mode) == 0o600
    tokens = NodeTokens(names.node_tokens)
    assert tokens.node_for(names.node_token("node-b").read_text()) == "node-b"

    model = AddressStore(names.controller_state_dir).model_for(load_file(DEMO))
    by_ref = {w.ref: w for w in model.workloads.values()}
    client, remote = by_ref["shop/client"], by_ref["shop/catalog-b"]

    ok = _sign_from(names, "node-a", names.node_token("node-a"), client.uid, client.identity)
    assert ok == {"identity": "spiffe://cluster.local/ns/shop/sa/client"}

    other = _sign_from(names, "node-a", names.node_token("node-a"), remote.uid, remote.identity)
    assert other["error"] == "PERMISSION_DENIED"
    assert "runs on node node-b, not on node node-a" in other["message"]

    (tmp_path / "wrong").write_text("not-a-token")
    (tmp_path / "wrong").chmod(0o600)  # private, as the agent requires: refused by the CA, not by the agent
    bad = _sign_from(names, "node-a", tmp_path / "wrong", client.uid, client.identity)
    assert bad["error"] == "UNAUTHENTICATED"

    log = Path(state.processes[CONTROLLER].log).read_text()
    assert "issued a certificate for spiffe://cluster.local/ns/shop/sa/client" in log
    assert "WARNING nodemesh.controller.ca.service: refused to sign for node node-a" in log
