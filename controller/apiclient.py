"""A client of the Kubernetes API server, for every part of the controller that talks to it.

One place decides how the controller finds its API server: a kubeconfig file when given
(``--kubeconfig``, as for a controller run outside the cluster or in the simulation's tests), else
the in-cluster configuration a pod gets (its service account token, the cluster CA and the
``KUBERNETES_SERVICE_HOST``/``_PORT`` environment the kubelet sets). The client is
kubernetes_asyncio's (docs/dependencies.md says why): the source's watches, the node
authenticator's TokenReviews and the CA's Secret all share it, and so its connection pool.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio import client, config

from nodemesh.errors import UserError


class ApiClientError(UserError):
    """No usable configuration for the API server; the message says what to give."""


async def connect(kubeconfig: Path | None) -> client.ApiClient:
    """An API client from ``kubeconfig``, or from the pod's in-cluster configuration when None.

    The in-cluster configuration refreshes its service account token as the kubelet rotates it.
    """
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            await config.load_kube_config(config_file=str(kubeconfig),
                                          client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        where = (f"--kubeconfig {kubeconfig}" if kubeconfig is not None else
                 "the in-cluster configuration (run in a pod with a service account, or give "
                 "--kubeconfig FILE)")
        raise ApiClientError(f"cannot configure the Kubernetes API client from {where}: {exc}") from None
    return client.ApiClient(configuration)
