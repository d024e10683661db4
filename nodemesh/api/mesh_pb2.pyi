from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Workload(_message.Message):
    __slots__ = ("uid", "name", "namespace", "service_account", "node", "ip", "labels", "meshed", "identity", "mtls_mode", "workload_name", "canonical_service", "canonical_revision")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MESHED_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    MTLS_MODE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_SERVICE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    uid: str
    name: str
    namespace: str
    service_account: str
    node: str
    ip: str
    labels: _containers.ScalarMap[str, str]
    meshed: bool
    identity: str
    mtls_mode: str
    workload_name: str
    canonical_service: str
    canonical_revision: str
    def __init__(self, uid: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., service_account: _Optional[str] = ..., node: _Optional[str] = ..., ip: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., meshed: _Optional[bool] = ..., identity: _Optional[str] = ..., mtls_mode: _Optional[str] = ..., workload_name: _Optional[str] = ..., canonical_service: _Optional[str] = ..., canonical_revision: _Optional[str] = ...) -> None: ...

class ServicePort(_message.Message):
    __slots__ = ("name", "port", "target_port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    target_port: int
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ..., target_port: _Optional[int] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "namespace", "vip", "ports", "endpoints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    vip: str
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., vip: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "ip", "pod_cidr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    name: str
    ip: str
    pod_cidr: str
    def __init__(self, name: _Optional[str] = ..., ip: _Optional[str] = ..., pod_cidr: _Optional[str] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("version", "snapshot", "workloads", "removed_workloads", "services", "removed_services", "nodes", "removed_nodes", "trust_bundle_pem")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    version: int
    snapshot: bool
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    removed_workloads: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    removed_services: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    removed_nodes: _containers.RepeatedScalarFieldContainer[str]
    trust_bundle_pem: bytes
    def __init__(self, version: _Optional[int] = ..., snapshot: _Optional[bool] = ..., workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., removed_workloads: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., removed_services: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., removed_nodes: _Optional[_Iterable[str]] = ..., trust_bundle_pem: _Optional[bytes] = ...) -> None: ...

class AgentHello(_message.Message):
    __slots__ = ("node", "agent_version", "last_version")
    NODE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    node: str
    agent_version: str
    last_version: int
    def __init__(self, node: _Optional[str] = ..., agent_version: _Optional[str] = ..., last_version: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("version", "accepted", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    accepted: bool
    reason: str
    def __init__(self, version: _Optional[int] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: AgentHello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[AgentHello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("workload_uid", "csr_pem")
    WORKLOAD_UID_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    workload_uid: str
    csr_pem: bytes
    def __init__(self, workload_uid: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("cert_chain_pem",)
    CERT_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    cert_chain_pem: bytes
    def __init__(self, cert_chain_pem: _Optional[bytes] = ...) -> None: ...
