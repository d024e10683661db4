"""A Pod's volumes: which files each one holds, and which mounts each container gets.

Sans-IO: ``needs`` says what a volume must fetch from the API server (ConfigMaps, Secrets,
service-account tokens), ``volume_files`` turns what was fetched into files with modes, and
``mount_plan`` lists a container's mounts, which ``mountinit`` makes inside the container's
private mount namespace. The node's "host" is the real host except what the sim maps
(the contract of issue 11, so the DaemonSet's hostPaths run unchanged):

- ``/sys/fs/cgroup``: the container gets a cgroup namespace rooted at the sim node's cgroup
  and cgroup2 mounted there (at the host's own cgroup2 mount point too, so every view the
  container has of cgroups is the node's);
- ``/sys/fs/bpf``: the node's own bpffs directory ``/sys/fs/bpf/nodemesh-<sim>/<node>``;
- anything else is the host's path, bind-mounted.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from nodemesh.tools.sim.kubelet.envvars import Obj, PodSpecError, field_value

HOST_CGROUP = PurePosixPath("/sys/fs/cgroup")
HOST_BPFFS = PurePosixPath("/sys/fs/bpf")
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600


class VolumeNotReady(Exception):
    """A ConfigMap or Secret a volume needs does not exist yet: the kubelet waits and retries."""


@dataclass(frozen=True)
class HostView:
    """What a sim node's "host" paths are on the real host."""

    node_cgroup: PurePosixPath  # the cgroup namespace's root
    cgroup2_mount: PurePosixPath  # where the real host mounts cgroup2 (/sys/fs/cgroup[/unified])
    bpf_dir: PurePosixPath  # the node's bpffs directory


@dataclass(frozen=True)
class Mount:
    """One mount in a container: ``kind`` "bind" (of ``source``) or "cgroup2" (a fresh mount)."""

    target: str
    kind: str = "bind"
    source: str = ""
    readonly: bool = False
    slave: bool = False  # HostToContainer: later host mounts below the source show up

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "source": self.source,
                "readonly": self.readonly, "slave": self.slave}


@dataclass(frozen=True)
class TokenNeed:
    audience: str
    expiration: int


def _pod_ref(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _sources(volume: Obj) -> list[tuple[str, Obj]]:
    """A volume's file sources as (kind, source): one for configMap/secret/downwardAPI, several
    for projected."""
    for kind in ("configMap", "secret", "downwardAPI"):
        if kind in volume:
            return [(kind, volume[kind])]
    if "projected" in volume:
        return [(kind, src[kind]) for src in volume["projected"].get("sources") or []
                for kind in ("configMap", "secret", "downwardAPI", "serviceAccountToken")
                if kind in src]
    return []


def _source_name(kind: str, source: Obj) -> str:
    return source["secretName"] if kind == "secret" and "secretName" in source else source.get("name", "")


def needs(volume: Obj) -> tuple[set[str], set[str], set[TokenNeed]]:
    """The ConfigMaps, Secrets and tokens ``volume``'s files are made of."""
    configmaps, secrets, tokens = set(), set(), set()
    for kind, source in _sources(volume):
        if kind == "configMap":
            configmaps.add(_source_name(kind, source))
        elif kind == "secret":
            secrets.add(_source_name(kind, source))
        elif kind == "serviceAccountToken":
            tokens.add(TokenNeed(source.get("audience", ""),
                                 int(source.get("expirationSeconds", DEFAULT_TOKEN_SECONDS))))
    return configmaps, secrets, tokens


@dataclass(frozen=True)
class Fetched:
    """What the API server gave for a pod's needs: data by name (None: does not exist)."""

    configmaps: Mapping[str, Mapping[str, bytes] | None]
    secrets: Mapping[str, Mapping[str, bytes] | None]
    tokens: Mapping[TokenNeed, str]


def configmap_data(obj: Obj) -> dict[str, bytes]:
    """A ConfigMap's keys as bytes (``data`` is text, ``binaryData`` base64)."""
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def secret_data(obj: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def _key_files(pod: Obj, what: str, data: Mapping[str, bytes] | None, source: Obj,
               mode: int) -> dict[str, tuple[bytes, int]]:
    if data is None:
        if source.get("optional"):
            return {}
        raise VolumeNotReady(f"Pod {_pod_ref(pod)}: {what} does not exist (yet)")
    items = source.get("items")
    if items is None:
        return {key: (value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeNotReady(f"Pod {_pod_ref(pod)}: {what} has no key {item['key']!r} (yet)")
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return files


def volume_files(pod: Obj, volume: Obj, fetched: Fetched) -> dict[str, tuple[bytes, int]]:
    """The files of ``volume`` as {relative path: (content, mode)}; VolumeNotReady when a
    non-optional ConfigMap or Secret (or one of its keys) is missing."""
    outer = volume.get("projected", volume.get("configMap", volume.get("secret",
                                                                        volume.get("downwardAPI", {}))))
    default = outer.get("defaultMode", DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    for kind, source in _sources(volume):
        name = _source_name(kind, source)
        if kind == "configMap":
            files.update(_key_files(pod, f"ConfigMap {name}", fetched.configmaps.get(name), source,
                                    default))
        elif kind == "secret":
            files.update(_key_files(pod, f"Secret {name}", fetched.secrets.get(name), source, default))
        elif kind == "serviceAccountToken":
            need = TokenNeed(source.get("audience", ""),
                             int(source.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)))
            files[source["path"]] = (fetched.tokens[need].encode(), default)
        else:
            for item in source.get("items") or []:
                if "fieldRef" not in item:
                    raise PodSpecError(f"Pod {_pod_ref(pod)}: volume {volume['name']}: only "
                                       "downwardAPI fieldRef items are supported by the sim kubelet")
                files[item["path"]] = (field_value(pod, item["fieldRef"]["fieldPath"]).encode(),
                                       item.get("mode", default))
    return files


def _under(path: PurePosixPath, root: PurePosixPath) -> PurePosixPath | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def _host_path_mounts(host: HostView, path: PurePosixPath, target: PurePosixPath, readonly: bool,
                      slave: bool) -> list[Mount]:
    if path == HOST_CGROUP or _under(host.cgroup2_mount, path) is not None:
        # The host's cgroup tree (on hybrid hosts a v1 tmpfs holding the cgroup2 mount) with
        # the cgroup2 in it replaced by the node's: agents see the node as their whole host.
        mounts = [] if path == target else [Mount(str(target), source=str(path), readonly=readonly)]
        inner = _under(host.cgroup2_mount, path)
        return [*mounts, Mount(str(target / inner) if inner is not None else str(target), "cgroup2")]
    bpf = _under(path, HOST_BPFFS)
    if bpf is not None:
        return [Mount(str(target), source=str(host.bpf_dir / bpf), readonly=readonly, slave=slave)]
    return [Mount(str(target), source=str(path), readonly=readonly, slave=slave)]


def mount_plan(pod: Obj, container: Obj, volume_dirs: Mapping[str, str], host: HostView) -> list[Mount]:
    """The mounts of ``container``, in order: the node's cgroup2 at the host's mount point
    first, then its volumeMounts. ``volume_dirs`` holds the kubelet's directory of each
    non-hostPath volume."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = [Mount(str(host.cgroup2_mount), "cgroup2")]
    for vm in container.get("volumeMounts") or []:
        volume = volumes.get(vm["name"])
        if volume is None:
            raise PodSpecError(f"Pod {_pod_ref(pod)}: container {container['name']}: volumeMount "
                               f"{vm['name']!r} names no volume of the pod")
        target = PurePosixPath(vm["mountPath"])
        readonly = bool(vm.get("readOnly"))
        slave = vm.get("mountPropagation") in ("HostToContainer", "Bidirectional")
        sub = vm.get("subPath", "")
        if "hostPath" in volume:
            source = PurePosixPath(volume["hostPath"]["path"]) / sub
            mounts += _host_path_mounts(host, source, target, readonly, slave)
        elif volume["name"] in volume_dirs:
            source = PurePosixPath(volume_dirs[volume["name"]]) / sub
            # configMap, secret, projected and downwardAPI volumes are read-only, as on a node
            mounts.append(Mount(str(target), source=str(source),
                                readonly=readonly or "emptyDir" not in volume))
        else:
            kinds = ", ".join(k for k in volume if k != "name")
            raise PodSpecError(f"Pod {_pod_ref(pod)}: volume {volume['name']}: {kinds} is not "
                               "supported by the sim kubelet (hostPath, emptyDir, configMap, "
                               "secret, projected and downwardAPI are)")
    return mounts


def is_kubelet_volume(volume: Obj) -> bool:
    """Whether the kubelet makes the volume's directory (everything but hostPath)."""
    return any(k in volume for k in ("emptyDir", "configMap", "secret", "projected", "downwardAPI"))
