"""``nodemesh controller``: build the mesh model from a file or the Kubernetes API, stream it to the agents and be
their certificate authority, over TLS, for agents that prove their node (a join token, or a
service-account token the API server reviews); and tell Prometheus how that goes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nodemesh.controller.durations import parse_duration
from nodemesh.errors import UserError
from nodemesh.flags import checked_by, parsed_by

DEFAULT_STATE_DIR = Path("/var/lib/nodemesh/controller")
DEFAULT_LISTEN = "0.0.0.0:15012"
DEFAULT_METRICS_LISTEN = "0.0.0.0:15014"
EXIT_INVALID_CONFIG = 2

log = logging.getLogger("nodemesh.controller")

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from nodemesh.controller.ca.authority import Authority
    from nodemesh.controller.ca.secret import ObjectRef
    from nodemesh.controller.nodeauth.auth import Authenticator
    from nodemesh.controller.server import ModelSource


class InvalidConfig(UserError):
    """The controller cannot start on its file: exit 2, which tells it from other refusals."""

    exit_code = EXIT_INVALID_CONFIG


def _check_listen(value: str) -> None:
    from nodemesh.controller.server import parse_listen  # loads gRPC: not for --help

    parse_listen(value)


def _check_metrics_listen(value: str) -> None:
    from nodemesh.controller.server import METRICS_PORT, parse_listen

    parse_listen(value, METRICS_PORT)


def _check_trust_domain(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from nodemesh.identity import Identity, IdentityError

    try:
        Identity.parse(str(Identity(value, "ns", "sa")))  # the one spelling agents will parse
    except IdentityError:
        raise click.BadParameter(f"{value!r} is not a trust domain: lowercase letters, digits, "
                                 "'.', '-' and '_' (e.g. cluster.local)") from None
    return value


@dataclass(frozen=True)
class CaOptions:
    """Where the CA comes from (see docs/ca.md)."""

    cert: Path | None
    key: Path | None
    bundle: Path | None
    extra_trust_bundle: Path | None
    lifetime: dt.timedelta

    def check(self) -> None:
        """Usage errors: the user's CA needs its certificate, key and root bundle together."""
        given = {"--ca-cert": self.cert, "--ca-key": self.key, "--ca-bundle": self.bundle}
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(name for name, v in given.items() if v is None)
            raise click.UsageError(f"a CA of your own needs --ca-cert, --ca-key and --ca-bundle "
                                   f"together (missing: {missing}); or give none of them and the "
                                   "controller makes its own root")


NODE_AUTH = ("tokens", "tokenreview")
AGENT_SERVICE_ACCOUNT = "nodemesh-agent"


def _parse_ref(text: str | None) -> tuple[str, str] | None:
    """``NAMESPACE/NAME`` -> (namespace, name), None when not given; ValueError in words."""
    if text is None:
        return None
    namespace, sep, name = text.partition("/")
    if not (sep and namespace and name) or "/" in name:
        raise ValueError(f"{text!r} is not NAMESPACE/NAME (e.g. nodemesh-system/nodemesh-ca)")
    return namespace, name


@dataclass(frozen=True)
class AuthOptions:
    """How agents prove their node, and whether the CA lives in a Secret (docs/ca.md).

    In Kubernetes mode (``kube``) agents are reviewed (TokenReview) and the CA is Secret
    ``$POD_NAMESPACE/nodemesh-ca`` unless the flags say otherwise; else join tokens and the
    state directory."""

    node_auth: str | None  # one of NODE_AUTH; None: by mode
    node_tokens: Path | None
    ca_secret: tuple[str, str] | None
    agent_service_account: tuple[str, str] | None
    server_names: tuple[str, ...]

    def mode(self, kube: bool) -> str:
        return self.node_auth or ("tokenreview" if kube else "tokens")

    def check(self, kube: bool, pod_namespace: str | None) -> None:
        """Usage errors: each mode's flags, and a namespace for what defaults to the pod's."""
        if self.mode(kube) == "tokens" and self.node_tokens is None:
            raise click.UsageError("agents authenticate with join tokens: give --node-tokens FILE "
                                   "(or --node-auth tokenreview in a cluster)")
        if self.mode(kube) == "tokenreview" and self.node_tokens is not None:
            raise click.UsageError("--node-tokens is for --node-auth tokens; with tokenreview "
                                   "agents present their service-account tokens")
        needs_namespace = ((self.mode(kube) == "tokenreview" and self.agent_service_account is None)
                           or (kube and self.ca_secret is None))
        if needs_namespace and not pod_namespace:
            raise click.UsageError("POD_NAMESPACE is not set: run in the controller's pod (its "
                                   "Deployment sets it), or give --agent-service-account and "
                                   "--ca-secret NAMESPACE/NAME")

    def uses_api(self, kube: bool) -> bool:
        """Whether anything talks to the API server: the source (--kube), TokenReview, the Secret."""
        return kube or self.mode(kube) == "tokenreview" or self.ca_secret is not None

    def agents(self, pod_namespace: str | None) -> tuple[str, str]:
        return self.agent_service_account or (pod_namespace or "", AGENT_SERVICE_ACCOUNT)

    def secret(self, kube: bool, pod_namespace: str | None) -> "ObjectRef | None":
        from nodemesh.controller.ca.secret import SECRET_NAME, ObjectRef

        if self.ca_secret is not None:
            return ObjectRef(*self.ca_secret)
        return ObjectRef(pod_namespace or "", SECRET_NAME) if kube else None


@dataclass(frozen=True)
class SourceOptions:
    """Where the objects come from: a file (local mode) or the Kubernetes API (``--kube``)."""

    path: Path | None
    kube: bool
    kubeconfig: Path | None

    def check(self, uses_api: bool) -> None:
        """Usage errors: exactly one source; --kubeconfig only when something talks to the API
        server (``uses_api``: --kube, TokenReview, the CA in a Secret)."""
        if self.kube == (self.path is not None):
            raise click.UsageError("give one source of objects: --file FILE (local mode) or "
                                   "--kube (the Kubernetes API)")
        if self.kubeconfig is not None and not uses_api:
            raise click.UsageError("--kubeconfig is for the Kubernetes API server (--kube, "
                                   "--node-auth tokenreview or --ca-secret)")


@click.command()
@click.option("--file", "path", type=click.Path(path_type=Path, dir_okay=False),
              help="Kubernetes YAML (Namespace, Pod, Service); reloaded when it changes.")
@click.option("--kube", is_flag=True,
              help="Watch the Kubernetes API instead of a file (in-cluster configuration, or "
                   "--kubeconfig).")
@click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False),
              help="The kubeconfig of the Kubernetes API server (--kube, TokenReview, the CA "
                   "Secret); default: the pod's in-cluster configuration.")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_STATE_DIR, show_default=True,
              help="Where assigned addresses (ipam.json) and the CA root (ca/) are kept across restarts.")
@click.option("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, show_default=True,
              callback=checked_by(_check_listen),
              help="HOST:PORT for the agents' gRPC API, TLS (port 0: any free port).")
@click.option("--metrics-listen", metavar="HOST:PORT", default=DEFAULT_METRICS_LISTEN,
              show_default=True, callback=checked_by(_check_metrics_listen),
              help="HOST:PORT for Prometheus: http://HOST:PORT/metrics (port 0: any free port).")
@click.option("--node-tokens", type=click.Path(path_type=Path, dir_okay=False),
              help='JSON {"<node>": "<sha256 hex of its join token>"}: the agents allowed in; '
                   "reloaded when it changes (--node-auth tokens).")
@click.option("--node-auth", type=click.Choice(NODE_AUTH), show_default="tokenreview with --kube, else tokens",
              help="How agents prove their node: join tokens (--node-tokens), or their projected "
                   "service-account token reviewed by the API server (TokenReview).")
@click.option("--agent-service-account", metavar="NAMESPACE/NAME", callback=parsed_by(_parse_ref),
              show_default=f"$POD_NAMESPACE/{AGENT_SERVICE_ACCOUNT}",
              help="The agents' service account (--node-auth tokenreview).")
@click.option("--ca-secret", metavar="NAMESPACE/NAME", callback=parsed_by(_parse_ref),
              show_default="$POD_NAMESPACE/nodemesh-ca with --kube",
              help="Keep the CA in this Secret (made on first start) instead of --state-dir/ca, and "
                   "publish its roots in ConfigMap NAMESPACE/nodemesh-ca-root.")
@click.option("--server-name", "server_names", multiple=True, metavar="DNS",
              help="Another name for the controller's TLS certificate (repeatable): what agents "
                   "verify with --controller-name.")
@click.option("--trust-domain", default="cluster.local", show_default=True,
              callback=_check_trust_domain,
              help="Trust domain of workload identities: spiffe://<it>/ns/<ns>/sa/<sa>.")
@click.option("--cert-lifetime", default="24h", show_default=True, callback=parsed_by(parse_duration),
              help="Lifetime of workload certificates (e.g. 30s, 5m, 24h); agents renew at half.")
@click.option("--ca-cert", type=click.Path(path_type=Path, dir_okay=False),
              help="Your own CA certificate (an intermediate; PEM, it first, then any issuers) "
                   "instead of a root the controller makes in --state-dir/ca.")
@click.option("--ca-key", type=click.Path(path_type=Path, dir_okay=False),
              help="The key of --ca-cert (unencrypted PEM).")
@click.option("--ca-bundle", type=click.Path(path_type=Path, dir_okay=False),
              help="The root(s) above --ca-cert (PEM): the trust bundle agents get.")
@click.option("--extra-trust-bundle", type=click.Path(path_type=Path, dir_okay=False),
              help="More roots (PEM) to add to the trust bundle: how a root is rotated.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
                                               case_sensitive=False),
              default="info", show_default=True)
def controller(path: Path | None, kube: bool, kubeconfig: Path | None, state_dir: Path,
               listen: str, metrics_listen: str, node_tokens: Path | None,
               node_auth: str | None, agent_service_account: tuple[str, str] | None,
               ca_secret: tuple[str, str] | None, server_names: tuple[str, ...],
               trust_domain: str, cert_lifetime: dt.timedelta, ca_cert: Path | None,
               ca_key: Path | None, ca_bundle: Path | None, extra_trust_bundle: Path | None,
               log_level: str) -> None:
    """Build the mesh model from FILE or the Kubernetes API, stream it to the node agents and
    sign their workloads' certificates, over TLS, for agents that prove their node (--node-auth)."""
    auth = AuthOptions(node_auth, node_tokens, ca_secret, agent_service_account, server_names)
    sources = SourceOptions(path, kube, kubeconfig)
    sources.check(auth.uses_api(kube))
    ca = CaOptions(ca_cert, ca_key, ca_bundle, extra_trust_bundle, cert_lifetime)
    ca.check()
    auth.check(kube=kube, pod_namespace=os.environ.get("POD_NAMESPACE"))
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nodemesh.controller.problems import Problems

    # Other refusals (ListenError, CaError, TokenFileError) are UserErrors as they are.
    try:
        asyncio.run(_run(sources, state_dir, listen, metrics_listen, auth, trust_domain, ca))
    except Problems as exc:
        raise InvalidConfig(f"cannot start, {len(exc.errors)} problem(s):\n  "
                            + "\n  ".join(exc.errors)) from None
    except OSError as exc:
        raise UserError(f"cannot use the state directory: {exc.filename or state_dir}: "
                        f"{exc.strerror or exc}; choose a writable --state-dir") from None


async def _authority(state_dir: Path, ca: CaOptions, secret: "ObjectRef | None",
                     api: "ApiClient | None") -> "Authority":
    """The CA: the user's files, else Secret ``secret``, else the root in the state directory. In
    Kubernetes (``secret`` given) its roots are published for agents whichever it is: the
    DaemonSet's agents verify the controller with that ConfigMap."""
    from nodemesh.controller.ca import store

    extra = store.read_certs(ca.extra_trust_bundle, "--extra-trust-bundle") if ca.extra_trust_bundle else []
    if ca.cert and ca.key and ca.bundle:
        authority = store.user_supplied(ca.cert, ca.key, ca.bundle, extra)
    elif secret is None:
        return store.self_signed(state_dir, extra)
    else:
        from nodemesh.controller.ca.secret import load_authority

        assert api is not None
        authority = await load_authority(api, secret, extra)
    if secret is not None:
        from nodemesh.controller.ca.secret import ROOT_CONFIGMAP, ObjectRef, publish_roots

        assert api is not None
        await publish_roots(api, ObjectRef(secret.namespace, ROOT_CONFIGMAP), authority.bundle_pem)
    return authority


def _authenticator(auth: AuthOptions, kube: bool, api: "ApiClient | None") -> "Authenticator":
    if auth.mode(kube) == "tokens":
        from nodemesh.controller.nodeauth.auth import JoinTokens
        from nodemesh.controller.nodeauth.tokens import NodeTokens

        assert auth.node_tokens is not None  # AuthOptions.check
        return JoinTokens(NodeTokens(auth.node_tokens))
    from nodemesh.controller.nodeauth.tokenreview import Expected, TokenReviews

    assert api is not None
    return TokenReviews(api, Expected(*auth.agents(os.environ.get("POD_NAMESPACE"))))


async def _run(sources: SourceOptions, state_dir: Path, listen: str, metrics_listen: str,
               auth: AuthOptions, trust_domain: str, ca: CaOptions) -> None:
    """Serve until SIGTERM/SIGINT, then close the streams and return (exit 0)."""
    from nodemesh.controller.server import serve

    secret = auth.secret(sources.kube, os.environ.get("POD_NAMESPACE"))
    async with contextlib.AsyncExitStack() as resources:
        api = None
        if auth.uses_api(sources.kube):
            from nodemesh.controller.apiclient import connect

            # one client for every part that talks to the API server, closed on the way out
            api = await resources.enter_async_context(await connect(sources.kubeconfig))
        # the source first: with --kube it waits out an API server that does not answer yet
        source = await _source(sources, state_dir, trust_domain, api)
        authenticator = _authenticator(auth, sources.kube, api)
        authority = await _authority(state_dir, ca, secret, api)
        running = await serve(source, listen, authority, authenticator, ca.lifetime, metrics_listen,
                              auth.server_names)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopping, running.watcher}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping")
        stopping.cancel()
        await running.stop()
        if running.watcher in done:
            running.watcher.result()  # the source gave up on its own: a bug, let it surface
    log.info("stopped")


async def _source(options: SourceOptions, state_dir: Path, trust_domain: str,
                  api: "ApiClient | None") -> "ModelSource":
    """The file source, or the Kubernetes source (``api`` given) once it listed everything: no
    agent is ever served half a cluster."""
    from nodemesh.controller.sources.addresses import AddressStore
    from nodemesh.controller.sources.file import FileSource

    if options.path is not None:
        return FileSource(options.path, AddressStore(state_dir), trust_domain=trust_domain)
    from nodemesh.controller.sources.kube.source import KubeSource

    assert api is not None  # --kube
    source = KubeSource(api, trust_domain)
    await source.start()
    return source
