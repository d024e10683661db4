"""Is a component serving? The API server's /readyz (as the admin: the answer lists no secrets,
but a client certificate tells a refused probe from an anonymous one) and the others' /healthz."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request

from nodemesh.tools.kube import pki


def open_direct(request: str | urllib.request.Request, context: ssl.SSLContext | None = None,
                timeout: float = 5.0) -> http.client.HTTPResponse:
    """urlopen, but never through the environment's proxies: every address asked here is the
    control plane's own (a loopback, a namespace's address), which no proxy can reach."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    return opener.open(request, timeout=timeout)


def get(url: str, context: ssl.SSLContext | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answered (the body says why)."""
    try:
        with open_direct(url, context, timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def apiserver_ready(server: str, cluster: pki.ClusterPki) -> bool:
    """Whether the API server at ``server`` (https://host:port) answers /readyz with ok."""
    context = ssl.create_default_context(cafile=str(cluster.ca_cert_path))
    admin = cluster.client(pki.ADMIN)
    context.load_cert_chain(admin.cert, admin.key)
    return get(f"{server}/readyz", context) == (200, b"ok")


def healthz(host: str, port: int) -> bool:
    """Whether a controller manager or scheduler at host:port answers /healthz with ok.

    They serve certificates they made themselves: the question is only whether they are up, so
    the certificate is not checked.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return get(f"https://{host}:{port}/healthz", context) == (200, b"ok")


def etcd_healthy(url: str) -> bool:
    status, body = get(f"{url}/health")
    return status == 200 and json.loads(body).get("health") == "true"
