"""Keeping the sim node's Node object and its Lease alive (the I/O of ``nodeobject``).

Registration creates the Node (or finds it, after a kubelet restart) with the node's own
credentials: the Node authorizer and NodeRestriction let ``system:node:<node>`` do exactly
this. Then every ``RENEW_SECONDS`` the Lease is renewed and the status patched, so the node
lifecycle controller never sees the node go stale and never taints it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh.tools.sim.kubelet.nodeobject import LEASE_NAMESPACE, RENEW_SECONDS, NodeInfo

log = logging.getLogger(__name__)


UNREACHABLE = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


async def register(api: client.ApiClient, info: NodeInfo, since: float) -> str:
    """Create the Node unless it exists, make it Ready; returns its UID. An API server that
    does not answer yet (a kubelet started again before it) is waited for."""
    while True:
        try:
            return await _register(api, info, since)
        except UNREACHABLE as exc:
            log.warning("cannot register node %s yet (retrying in %ds): %s", info.name, RENEW_SECONDS, exc)
            await asyncio.sleep(RENEW_SECONDS)


async def _register(api: client.ApiClient, info: NodeInfo, since: float) -> str:
    core = client.CoreV1Api(api)
    try:
        node = await core.create_node(info.node())
    except ApiException as exc:
        if exc.status != 409:
            raise
        node = await core.read_node(info.name)
    await heartbeat(api, info, node.metadata.uid, since)
    return node.metadata.uid


async def heartbeat(api: client.ApiClient, info: NodeInfo, node_uid: str, since: float) -> None:
    """Status and Lease, once."""
    now = time.time()
    core = client.CoreV1Api(api)
    await core.patch_node_status(info.name, info.status(now, since),
                                 _content_type="application/merge-patch+json")
    leases = client.CoordinationV1Api(api)
    body = info.lease(now, node_uid)
    try:
        current = await leases.read_namespaced_lease(info.name, LEASE_NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        await leases.create_namespaced_lease(LEASE_NAMESPACE, body)
        return
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    await leases.replace_namespaced_lease(info.name, LEASE_NAMESPACE, body)


async def keep_alive(api: client.ApiClient, info: NodeInfo, node_uid: str, since: float) -> None:
    """Heartbeat forever; an API error is logged and tried again next period, as the kubelet."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            await heartbeat(api, info, node_uid, since)
        except (ApiException, *UNREACHABLE) as exc:
            log.warning("node heartbeat failed (retrying in %ds): %s", RENEW_SECONDS, exc)
