"""Finding a pod's cgroup from its UID: the kubelet's names under both drivers, the search for
kubepods below the cgroup root, and pods that are not there yet.

The trees are real directories in tmp_path, laid out as the kubelet lays out cgroups; the
kernel's part (processes, their namespaces) is tests/integration/test_pod_discovery.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodemesh.agent.inpod.discovery import KubeletCgroups, NotYet, find_kubepods
from nodemesh.agent.inpod.kubepods import is_kubepods, pod_cgroups
from nodemesh.cgroups import subtree_pids
from nodemesh.model import Workload

UID = "8f2a61c4-0b9e-4d7e-a1b2-3c4d5e6f7a8b"
UID_ = UID.replace("-", "_")


def pod(uid: str = UID) -> Workload:
    return Workload(uid=uid, name="web-1", namespace="shop", service_account="web", node="n1", ip="10.10.1.10")


def test_cgroupfs_names_keep_the_uid_and_have_one_level_per_qos_class():
    assert pod_cgroups("kubepods", UID) == [f"pod{UID}", f"burstable/pod{UID}", f"besteffort/pod{UID}"]


def test_systemd_names_repeat_their_parents_and_turn_the_uids_dashes_into_underscores():
    assert pod_cgroups("kubepods.slice", UID) == [
        f"kubepods-pod{UID_}.slice",
        f"kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice",
        f"kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
    ]


def test_a_systemd_cgroup_root_prefix_is_in_every_name_below_it():
    """kind runs the kubelet with --cgroup-root=/kubelet: kubelet.slice/kubelet-kubepods.slice/..."""
    assert is_kubepods("kubelet-kubepods.slice")
    assert pod_cgroups("kubelet-kubepods.slice", UID)[2] == \
        f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice"


@pytest.mark.parametrize("name", ["kubepods", "kubepods.slice", "kubelet-kubepods.slice"])
def test_kubepods_is_recognised_under_either_driver(name):
    assert is_kubepods(name)


@pytest.mark.parametrize("name", ["system.slice", "kubepods-besteffort.slice", "kubepods.scope", "mykubepods"])
def test_other_cgroups_are_not_kubepods(name):
    assert not is_kubepods(name)


@pytest.mark.parametrize("uid", ["", "../../system.slice", "a/b"])
def test_a_uid_that_could_name_another_path_is_refused(uid):
    with pytest.raises(ValueError, match="is not a pod UID"):
        pod_cgroups("kubepods", uid)


def tree(root: Path, *dirs: str, procs: dict[str, str] | None = None) -> Path:
    """Directories below ``root`` (a cgroup tree's shape), with cgroup.procs files where given."""
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for d, text in (procs or {}).items():
        (root / d / "cgroup.procs").write_text(text)
    return root


@pytest.mark.parametrize("layout", [
    f"kubepods/pod{UID}/c1",
    f"kubepods/burstable/pod{UID}/c1",
    f"kubepods/besteffort/pod{UID}/c1",
    f"kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-abc.scope",
    f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-abc.scope",
    f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-abc.scope",
])
def test_the_pods_cgroup_is_found_for_every_driver_and_qos_class(tmp_path, layout):
    tree(tmp_path, "system.slice/containerd.service", layout)
    assert KubeletCgroups(tmp_path).pod_cgroup(UID) == tmp_path / layout.rsplit("/", 1)[0]


def test_kubepods_below_a_cgroup_root_prefix_is_found_and_remembered(tmp_path):
    tree(tmp_path, "system.slice/ssh.service", f"kubelet.slice/kubelet-kubepods.slice/"
         f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice")
    discovery = KubeletCgroups(tmp_path)
    assert discovery.pod_cgroup(UID).name == f"kubelet-kubepods-besteffort-pod{UID_}.slice"
    assert discovery.kubepods == [tmp_path / "kubelet.slice/kubelet-kubepods.slice"]


def test_the_search_is_bounded_and_does_not_enter_kubepods(tmp_path):
    tree(tmp_path, "a/b/kubepods", "a/b/c/kubepods", "kubepods/besteffort/kubepods")
    assert sorted(find_kubepods(tmp_path, 3)) == [tmp_path / "a/b/kubepods", tmp_path / "kubepods"]
    assert find_kubepods(tmp_path, 1) == [tmp_path / "kubepods"]


def test_kubepods_is_searched_again_once_it_vanished(tmp_path):
    tree(tmp_path, f"old/kubepods/pod{UID}")
    discovery = KubeletCgroups(tmp_path)
    discovery.pod_cgroup(UID)
    (tmp_path / f"old/kubepods/pod{UID}").rmdir()
    (tmp_path / "old/kubepods").rmdir()
    tree(tmp_path, f"new/kubepods/besteffort/pod{UID}")
    assert discovery.pod_cgroup(UID) == tmp_path / f"new/kubepods/besteffort/pod{UID}"


def test_no_kubepods_is_pending_with_what_to_check(tmp_path):
    tree(tmp_path, "system.slice")
    with pytest.raises(NotYet, match=f"no kubepods cgroup within 3 levels of {tmp_path}: is the kubelet running"):
        KubeletCgroups(tmp_path).open(pod())


def test_a_pod_without_a_cgroup_yet_is_pending(tmp_path):
    tree(tmp_path, "kubepods/besteffort/podother")
    with pytest.raises(NotYet, match=f"no cgroup for pod UID {UID} in {tmp_path / 'kubepods'}"):
        KubeletCgroups(tmp_path).open(pod())


def test_a_pod_cgroup_without_a_process_yet_is_pending(tmp_path):
    tree(tmp_path, f"kubepods/besteffort/pod{UID}/c1", procs={f"kubepods/besteffort/pod{UID}/c1": ""})
    with pytest.raises(NotYet, match="has no process yet"):
        KubeletCgroups(tmp_path).open(pod())


def test_a_pod_whose_processes_all_exited_since_their_cgroup_listed_them_is_pending(tmp_path):
    gone = 4194305  # above the kernel's largest pid_max: never a process
    tree(tmp_path, f"kubepods/pod{UID}/c1", procs={f"kubepods/pod{UID}/c1": f"{gone}\n{gone + 1}\n"})
    with pytest.raises(NotYet, match="has no process yet"):
        KubeletCgroups(tmp_path).open(pod())


def test_a_uid_that_is_no_uid_is_pending_not_a_crash(tmp_path):
    tree(tmp_path, "kubepods")
    with pytest.raises(NotYet, match="is not a pod UID"):
        KubeletCgroups(tmp_path).open(pod("../x"))


def test_processes_are_read_from_the_whole_subtree_top_down(tmp_path):
    p = tree(tmp_path, "pod/c1", "pod/c2/inner", procs={"pod": "", "pod/c1": "7\n8\n", "pod/c2/inner": "9\n"})
    assert sorted(subtree_pids(p / "pod")) == [7, 8, 9]
    assert list(subtree_pids(tmp_path / "gone")) == []


def _agent(cli, tmp_path: Path, *flags: str):
    return cli("agent", "--node", "n1", "--controller-ca", str(tmp_path / "ca.pem"),
               "--token-file", str(tmp_path / "token"), *flags)


def test_the_template_source_needs_a_template(cli, tmp_path):
    result = _agent(cli, tmp_path, "--cgroup", str(tmp_path))
    assert result.returncode == 2
    assert "--pod-netns-from=template needs --pod-netns-template" in result.stderr


def test_a_template_with_the_cgroup_source_is_a_usage_error(cli, tmp_path):
    result = _agent(cli, tmp_path, "--pod-netns-from=cgroup", "--pod-netns-template", "/run/netns/{name}")
    assert result.returncode == 2
    assert "--pod-netns-template is for --pod-netns-from=template only" in result.stderr


def test_the_cgroup_source_needs_neither_a_template_nor_a_cgroup_flag(cli, tmp_path):
    """It gets as far as reading the credentials: the cgroup root came from /proc/self/mounts."""
    result = _agent(cli, tmp_path, "--pod-netns-from=cgroup")
    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path / 'ca.pem'}: cannot read: No such file or directory\n"
