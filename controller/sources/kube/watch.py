"""The IO of one resource's list-then-watch (the rules are ``reflector.py``'s).

Requests go through kubernetes_asyncio's ``ApiClient.call_api`` with ``_preload_content=False``:
its configuration (kubeconfig or in-cluster, the token it refreshes) and connection pool, but
objects as the API serves them, JSON-decoded here, line by line for a watch. The typed models
would be converted back to the dicts every parser reads, and are no use to us.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

import aiohttp
from kubernetes_asyncio import client

from nodemesh.controller.sources.kube.reflector import GONE, WATCH_TIMEOUT, Changes, List, Reflector, Wait

NOT_FOUND = 404
CONNECT_TIMEOUT = 10.0
# A watch is silent for at most about a minute (the server sends bookmarks) and ends after
# WATCH_TIMEOUT: reading nothing for longer means the connection is dead.
READ_TIMEOUT = WATCH_TIMEOUT + 30.0
LIST_TIMEOUT = 60.0


class RequestFailed(Exception):
    """An HTTP status other than 2xx, 404 of a list and 410: the reason, for the log."""


async def run(api: client.ApiClient, reflector: Reflector, changed: Callable[[Changes], None],
              sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Keep ``reflector`` in step with the API server, reporting each change; until cancelled."""
    while True:
        step = reflector.next_step()
        if isinstance(step, Wait):
            await sleep(step.seconds)
            continue
        try:
            if isinstance(step, List):
                changed(await _list(api, reflector))
            else:
                await _watch(api, reflector, step.params, changed)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, json.JSONDecodeError,
                RequestFailed) as exc:
            reflector.failed(_reason(api, exc))


async def _get(api: client.ApiClient, path: str, params: dict[str, str],
               timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    return await api.call_api(path, "GET", query_params=list(params.items()),
                              header_params={"Accept": "application/json"},
                              auth_settings=["BearerToken"], _preload_content=False,
                              _request_timeout=timeout)


async def _list(api: client.ApiClient, reflector: Reflector) -> Changes:
    response = await _get(api, reflector.resource.path, {},
                          aiohttp.ClientTimeout(total=LIST_TIMEOUT, sock_connect=CONNECT_TIMEOUT))
    async with response:
        if response.status == NOT_FOUND and reflector.resource.optional:
            return reflector.not_installed()
        body = await _checked(response)
    return reflector.listed(body.get("items") or [], body["metadata"]["resourceVersion"])


async def _watch(api: client.ApiClient, reflector: Reflector, params: dict[str, str],
                 changed: Callable[[Changes], None]) -> None:
    response = await _get(api, reflector.resource.path, params,
                          aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT))
    async with response:
        if response.status == GONE:
            changed(reflector.gone())
            return
        await _checked(response, decode=False)
        reflector.watching()
        while line := await response.content.readline():
            if line.strip():
                changed(reflector.event(json.loads(line)))
            if reflector.resource_version is None:
                return  # 410 as an ERROR event: list again


async def _checked(response: aiohttp.ClientResponse, decode: bool = True) -> Any:
    """The JSON body of a 2xx response; RequestFailed with the API's message otherwise."""
    if not 200 <= response.status <= 299:
        text = (await response.text())[:500]
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        raise RequestFailed(f"HTTP {response.status} from {response.url.path}: {message}")
    return await response.json() if decode else None


def _reason(api: client.ApiClient, exc: Exception) -> str:
    """What the log says went wrong, naming the API server's URL when it cannot be reached."""
    if isinstance(exc, RequestFailed):
        return str(exc)
    if isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError)):
        return f"cannot reach the Kubernetes API at {api.configuration.host}: {str(exc) or 'timed out'}"
    return f"the connection to the Kubernetes API at {api.configuration.host} failed: {exc}"
