"""Shared fixtures: kernel prerequisites for `kernel` tests, and simulated clusters that never outlive a test.

A `kernel` test on a host without root, bcc, cgroup v2 or iproute2 FAILS with the reason and
what to do: a silent skip would let a CI run without them look green.
"""

from __future__ import annotations

import subprocess
from typing import Callable, Iterator

import pytest

from nodemesh.tools.sim.names import SimNames

# a real Kubernetes control plane, for any module (tests/kubeapi.py)
from kubeapi import control_plane, kube_namespace  # noqa: E402,F401


@pytest.fixture(scope="session")
def kernel_prerequisites() -> None:
    from nodemesh.tools.check import (
        bcc_import,
        bpffs,
        cgroup2,
        iproute2,
        kernel_version,
        root,
        run_checks,
    )

    # bpffs is mounted when missing, as `nodemesh check` does: a sim's pinned objects live there
    missing = [r for r in run_checks((root, kernel_version, cgroup2, bpffs, bcc_import, iproute2))
               if not r.ok]
    if missing:
        pytest.fail("this test needs a host that can run nodemesh (see `nodemesh check`):\n"
                    + "\n".join(f"  {r.name}: {r.detail} -> {r.fix}" for r in missing), pytrace=False)


@pytest.fixture(autouse=True)
def _kernel_marker_needs_prerequisites(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("kernel"):
        request.getfixturevalue("kernel_prerequisites")


@pytest.fixture
def sim_names(kernel_prerequisites: None) -> Iterator[Callable[[str], SimNames]]:
    """``sim_names("t1")``: names of a sim that is torn down before and after the test, even on failure.

    After the test it also checks that ``down`` left nothing behind, so no test can pass while
    leaking namespaces, cgroups or processes into the next one.
    """
    from nodemesh.tools.sim.cleanup import down, leftovers

    made: list[SimNames] = []

    def make(sim: str) -> SimNames:
        names = SimNames(sim)
        down(names)
        made.append(names)
        return names

    yield make
    for names in made:
        down(names)
        assert leftovers(names) == [], f"sim {names.sim} left things behind"


def nodemesh(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the ``nodemesh`` CLI of this venv (as users and the Makefile do), capturing its output."""
    from nodemesh.tools.sim.cluster import nodemesh_argv

    return subprocess.run(nodemesh_argv(*args), input=input, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return nodemesh
