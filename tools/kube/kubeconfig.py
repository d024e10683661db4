"""Kubeconfig files with their certificates embedded, so one file is all a client needs."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from nodemesh.tools.kube.pki import Credentials, write_file


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(server: str, ca_pem: bytes, user: Credentials, name: str = "nodemesh") -> dict:
    """The kubeconfig (as data) of one cluster at ``server`` and one user authenticating with ``user``."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(user.cert.read_bytes()),
                                          "client-key-data": _b64(user.key.read_bytes())}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, user: Credentials) -> Path:
    """Write the kubeconfig of ``user`` at ``server`` to ``path``, 0600 (it holds a private key)."""
    return write_file(path, yaml.safe_dump(kubeconfig(server, ca_pem, user), sort_keys=False).encode(),
                      private=True)
