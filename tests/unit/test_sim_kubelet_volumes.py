"""The sim kubelet's volumes: files from ConfigMaps, Secrets, tokens, downward API; mount plans."""

import base64
from pathlib import PurePosixPath

import pytest

from nodemesh.tools.sim.kubelet.envvars import PodSpecError
from nodemesh.tools.sim.kubelet.volumes import (
    Fetched,
    HostView,
    Mount,
    TokenNeed,
    VolumeNotReady,
    configmap_data,
    mount_plan,
    needs,
    secret_data,
    volume_files,
)

HYBRID = HostView(PurePosixPath("/sys/fs/cgroup/unified/nodemesh-s/node-a"),
                  PurePosixPath("/sys/fs/cgroup/unified"), PurePosixPath("/sys/fs/bpf/nodemesh-s/node-a"))
PURE_V2 = HostView(PurePosixPath("/sys/fs/cgroup/nodemesh-s/node-a"), PurePosixPath("/sys/fs/cgroup"),
                   PurePosixPath("/sys/fs/bpf/nodemesh-s/node-a"))

API_ACCESS = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace",
                                "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}


def pod(volumes, mounts=()):
    return {"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "volumeMounts": list(mounts)}]}}


def test_the_injected_api_access_volume_has_token_ca_and_namespace():
    assert needs(API_ACCESS) == ({"kube-root-ca.crt"}, set(), {TokenNeed("", 3607)})
    fetched = Fetched({"kube-root-ca.crt": {"ca.crt": b"PEM"}}, {}, {TokenNeed("", 3607): "tok"})
    assert volume_files(pod([API_ACCESS]), API_ACCESS, fetched) == {
        "token": (b"tok", 0o644), "ca.crt": (b"PEM", 0o644), "namespace": (b"shop", 0o644)}


def test_the_agents_token_volume_has_its_audience_and_mode():
    volume = {"name": "t", "projected": {"defaultMode": 0o400, "sources": [
        {"serviceAccountToken": {"audience": "nodemesh", "expirationSeconds": 3600, "path": "token"}}]}}
    need = TokenNeed("nodemesh", 3600)
    assert needs(volume)[2] == {need}
    assert volume_files(pod([volume]), volume, Fetched({}, {}, {need: "t"})) == {"token": (b"t", 0o400)}


def test_config_map_items_and_modes():
    volume = {"name": "ca", "configMap": {"name": "nodemesh-ca-root", "defaultMode": 0o640,
                                          "items": [{"key": "root-cert.pem", "path": "root-cert.pem"},
                                                    {"key": "x", "path": "sub/x", "mode": 0o600}]}}
    fetched = Fetched({"nodemesh-ca-root": {"root-cert.pem": b"R", "x": b"X", "y": b"Y"}}, {}, {})
    assert volume_files(pod([volume]), volume, fetched) == {"root-cert.pem": (b"R", 0o640),
                                                            "sub/x": (b"X", 0o600)}


def test_a_missing_config_map_waits_unless_optional():
    volume = {"name": "ca", "configMap": {"name": "nodemesh-ca-root"}}
    with pytest.raises(VolumeNotReady, match="ConfigMap nodemesh-ca-root does not exist"):
        volume_files(pod([volume]), volume, Fetched({"nodemesh-ca-root": None}, {}, {}))
    optional = {"name": "ca", "configMap": {"name": "nodemesh-ca-root", "optional": True}}
    assert volume_files(pod([optional]), optional, Fetched({"nodemesh-ca-root": None}, {}, {})) == {}


def test_a_missing_key_waits():
    volume = {"name": "ca", "configMap": {"name": "m", "items": [{"key": "k", "path": "k"}]}}
    with pytest.raises(VolumeNotReady, match="no key 'k'"):
        volume_files(pod([volume]), volume, Fetched({"m": {}}, {}, {}))


def test_secrets_are_named_by_secret_name_and_decoded():
    volume = {"name": "s", "secret": {"secretName": "creds"}}
    assert needs(volume) == (set(), {"creds"}, set())
    data = secret_data({"data": {"k": base64.b64encode(b"v").decode()}})
    assert volume_files(pod([volume]), volume, Fetched({}, {"creds": data}, {})) == {"k": (b"v", 0o644)}


def test_config_map_binary_data():
    assert configmap_data({"data": {"a": "x"}, "binaryData": {"b": base64.b64encode(b"\0").decode()}}) == {
        "a": b"x", "b": b"\0"}


def test_every_container_gets_the_nodes_cgroup2_at_the_hosts_mount_point():
    assert mount_plan(pod([]), {"name": "c"}, {}, HYBRID) == [Mount("/sys/fs/cgroup/unified", "cgroup2")]


def test_agent_host_paths_map_to_the_sim_node():
    volumes = [{"name": "bpf", "hostPath": {"path": "/sys/fs/bpf"}},
               {"name": "cg", "hostPath": {"path": "/sys/fs/cgroup"}},
               {"name": "netns", "hostPath": {"path": "/run/netns"}}]
    container = {"name": "agent", "volumeMounts": [
        {"name": "bpf", "mountPath": "/sys/fs/bpf"},
        {"name": "cg", "mountPath": "/sys/fs/cgroup"},
        {"name": "netns", "mountPath": "/run/netns", "mountPropagation": "HostToContainer"}]}
    assert mount_plan(pod(volumes), container, {}, HYBRID)[1:] == [
        Mount("/sys/fs/bpf", source="/sys/fs/bpf/nodemesh-s/node-a"),
        Mount("/sys/fs/cgroup/unified", "cgroup2"),  # the host's v1 tree stays, its cgroup2 is the node's
        Mount("/run/netns", source="/run/netns", slave=True)]
    assert mount_plan(pod(volumes), container, {}, PURE_V2)[2] == Mount("/sys/fs/cgroup", "cgroup2")


def test_host_cgroups_elsewhere_bind_the_tree_then_mount_the_nodes_cgroup2_in_it():
    volumes = [{"name": "cg", "hostPath": {"path": "/sys/fs/cgroup"}}]
    container = {"name": "c", "volumeMounts": [{"name": "cg", "mountPath": "/host/cgroup",
                                                "readOnly": True}]}
    assert mount_plan(pod(volumes), container, {}, HYBRID)[1:] == [
        Mount("/host/cgroup", source="/sys/fs/cgroup", readonly=True),
        Mount("/host/cgroup/unified", "cgroup2")]


def test_kubelet_volumes_are_read_only_except_empty_dirs():
    volumes = [API_ACCESS, {"name": "scratch", "emptyDir": {}}]
    container = {"name": "c", "volumeMounts": [
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        {"name": "scratch", "mountPath": "/tmp/s", "subPath": "a"}]}
    dirs = {"kube-api-access-x": "/run/k/v/api", "scratch": "/run/k/v/scratch"}
    assert mount_plan(pod(volumes), container, dirs, HYBRID)[1:] == [
        Mount("/var/run/secrets/kubernetes.io/serviceaccount", source="/run/k/v/api", readonly=True),
        Mount("/tmp/s", source="/run/k/v/scratch/a")]


def test_unknown_volumes_and_mounts_are_refused_by_name():
    with pytest.raises(PodSpecError, match="volumeMount 'nope' names no volume"):
        mount_plan(pod([]), {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, {},
                   HYBRID)
    volumes = [{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}]
    with pytest.raises(PodSpecError, match="volume v: persistentVolumeClaim is not supported"):
        mount_plan(pod(volumes), {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/x"}]}, {},
                   HYBRID)
