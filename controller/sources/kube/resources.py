"""The resources the Kubernetes source watches, and where the API serves them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str  # "v1" for the core group, else "<group>/<version>"
    plural: str
    optional: bool = False  # a CRD that may not be installed: "none of those", not a failure

    @property
    def path(self) -> str:
        """The collection's URL path, across all namespaces."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/{self.plural}"

    @property
    def crd(self) -> str:
        """The CustomResourceDefinition's name, as a message tells the user to install it."""
        return f"{self.plural}.{self.api_version.split('/')[0]}"


RESOURCES = (
    Resource("Namespace", "v1", "namespaces"),
    Resource("Node", "v1", "nodes"),
    Resource("Pod", "v1", "pods"),
    Resource("Service", "v1", "services"),
    Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    Resource("AuthorizationPolicy", "security.istio.io/v1", "authorizationpolicies", optional=True),
    Resource("TrafficPolicy", "nodemesh.io/v1alpha1", "trafficpolicies", optional=True),
    Resource("TCPRoute", "gateway.networking.k8s.io/v1alpha2", "tcproutes", optional=True),
)
