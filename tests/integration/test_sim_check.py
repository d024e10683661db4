"""`nodemesh check` on this host, which the project's tests already require to be capable."""

import json

import pytest

from nodemesh.tools.check import CHECKS, OPTIONAL_CHECKS, PROBE_PROGRAM, bpf_programs

pytestmark = pytest.mark.kernel


def test_this_host_passes_every_check(cli):
    out = cli("check")
    assert out.returncode == 0, out.stdout
    # the optional ones too: setup installs what they look for
    assert out.stdout.count("\nOK ") + out.stdout.startswith("OK ") == len(CHECKS) + len(OPTIONAL_CHECKS)
    assert "this host can run a nodemesh agent" in out.stdout


def test_json_output_lists_each_check(cli):
    results = json.loads(cli("check", "-o", "json").stdout)
    assert [r["name"] for r in results] == ["kernel", "BTF", "root", "bpffs", "cgroup v2", "iproute2",
                                            "kernel headers", "bcc", "eBPF programs", "prometheus"]
    assert all(r["ok"] for r in results)


def test_a_program_the_kernel_refuses_fails_with_the_reason():
    # a helper sock_addr programs may not call: it compiles, then the kernel refuses to load it
    refused = bpf_programs(PROBE_PROGRAM.replace("bpf_get_netns_cookie(ctx)", "bpf_get_stackid(ctx, 0, 0)", 1))
    assert not refused.ok and "Failed to load BPF program b'probe_connect4'" in refused.detail, refused
    broken = bpf_programs(PROBE_PROGRAM + "\nint broken( {")
    assert not broken.ok and "error" in broken.detail and "make setup" in broken.fix
