"""A pod's kubelet-made volumes from the API server: ConfigMaps, Secrets, tokens, then files.

The I/O half of ``volumes``: fetch what each volume ``needs`` (a service-account token by
TokenRequest, bound to the Pod, with the volume's audience and lifetime; a ConfigMap or Secret
that does not exist is None, which ``volume_files`` turns into "wait" unless optional) and
write the files under the pod's directory, where the container's mounts find them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh.tools.sim.kubelet import runtime
from nodemesh.tools.sim.kubelet.envvars import Obj
from nodemesh.tools.sim.kubelet.volumes import (
    Fetched,
    TokenNeed,
    configmap_data,
    is_kubelet_volume,
    needs,
    secret_data,
    volume_files,
)


async def get_json(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A client call's response as the API's own JSON (camelCase dicts, what the plans read).

    Without preloading, kubernetes_asyncio hands back error responses as they are (a Status
    object, not an exception): raised here as the ApiException a preloaded call would raise, so
    that a 404 is never read as an object without data.
    """
    response = await call(*args, _preload_content=False, **kwargs)
    async with response:
        body = await response.read()
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = body.decode(errors="replace")
            raise error
    return json.loads(body)


async def _data(call: Any, name: str, ns: str, decode: Callable[[Obj], Any]) -> Any:
    try:
        return decode(await get_json(call, name, ns))
    except ApiException as exc:
        if exc.status in (403, 404):  # the Node authorizer says 403 until the object exists
            return None
        raise


async def _token(core: client.CoreV1Api, pod: Obj, need: TokenNeed) -> str:
    meta = pod["metadata"]
    spec: dict[str, Any] = {"expirationSeconds": need.expiration,
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                               "name": meta["name"], "uid": meta["uid"]}}
    if need.audience:  # none: the API server's own audience, as the kubelet asks
        spec["audiences"] = [need.audience]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    answer = await get_json(core.create_namespaced_service_account_token,
                            pod["spec"].get("serviceAccountName", "default"), meta["namespace"], body)
    return answer["status"]["token"]


async def _fetch(core: client.CoreV1Api, pod: Obj, volumes: list[Obj]) -> Fetched:
    configmaps: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    tokens: dict[TokenNeed, str] = {}
    ns = pod["metadata"]["namespace"]
    for volume in volumes:
        cms, secs, toks = needs(volume)
        for name in cms - configmaps.keys():
            configmaps[name] = await _data(core.read_namespaced_config_map, name, ns, configmap_data)
        for name in secs - secrets.keys():
            secrets[name] = await _data(core.read_namespaced_secret, name, ns, secret_data)
        for need in toks - tokens.keys():
            tokens[need] = await _token(core, pod, need)
    return Fetched(configmaps, secrets, tokens)


async def write(core: client.CoreV1Api, pod: Obj, root: Path) -> tuple[dict[str, str], float | None]:
    """Every kubelet-made volume of ``pod`` (its status as the kubelet sees it, for the downward
    API) written under ``root``: their directories by volume name, and the shortest token
    lifetime (None without tokens), after which they must be written again."""
    volumes = [v for v in pod["spec"].get("volumes") or [] if is_kubelet_volume(v)]
    fetched = await _fetch(core, pod, volumes)
    dirs = {}
    for volume in volumes:
        directory = root / volume["name"]
        if "emptyDir" in volume:
            directory.mkdir(parents=True, exist_ok=True)
        else:
            runtime.write_files(directory, volume_files(pod, volume, fetched))
        dirs[volume["name"]] = str(directory)
    lifetimes = [need.expiration for need in fetched.tokens]
    return dirs, float(min(lifetimes)) if lifetimes else None
