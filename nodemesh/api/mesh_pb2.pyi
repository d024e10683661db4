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

class TrafficPolicy(_message.Message):
    __slots__ = ("load_balancer", "prefer_close", "connect_timeout", "connect_retries", "outlier_consecutive_failures", "outlier_base_ejection", "outlier_max_ejection", "outlier_max_ejected_percent", "max_connections", "max_pending", "idle_timeout", "rate_limit", "rate_burst")
    LOAD_BALANCER_FIELD_NUMBER: _ClassVar[int]
    PREFER_CLOSE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONNECT_RETRIES_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_BASE_EJECTION_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_MAX_EJECTION_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_MAX_EJECTED_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_BURST_FIELD_NUMBER: _ClassVar[int]
    load_balancer: str
    prefer_close: bool
    connect_timeout: float
    connect_retries: int
    outlier_consecutive_failures: int
    outlier_base_ejection: float
    outlier_max_ejection: float
    outlier_max_ejected_percent: int
    max_connections: int
    max_pending: int
    idle_timeout: float
    rate_limit: float
    rate_burst: int
    def __init__(self, load_balancer: _Optional[str] = ..., prefer_close: _Optional[bool] = ..., connect_timeout: _Optional[float] = ..., connect_retries: _Optional[int] = ..., outlier_consecutive_failures: _Optional[int] = ..., outlier_base_ejection: _Optional[float] = ..., outlier_max_ejection: _Optional[float] = ..., outlier_max_ejected_percent: _Optional[int] = ..., max_connections: _Optional[int] = ..., max_pending: _Optional[int] = ..., idle_timeout: _Optional[float] = ..., rate_limit: _Optional[float] = ..., rate_burst: _Optional[int] = ...) -> None: ...

class Backend(_message.Message):
    __slots__ = ("service", "port", "weight", "parent_port")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PARENT_PORT_FIELD_NUMBER: _ClassVar[int]
    service: str
    port: int
    weight: int
    parent_port: int
    def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., weight: _Optional[int] = ..., parent_port: _Optional[int] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "namespace", "vip", "ports", "endpoints", "traffic", "backends")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    vip: str
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    traffic: TrafficPolicy
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., vip: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., endpoints: _Optional[_Iterable[str]] = ..., traffic: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ...) -> None: ...

class AuthorizationSource(_message.Message):
    __slots__ = ("principals", "not_principals", "namespaces", "not_namespaces", "ip_blocks", "not_ip_blocks")
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NOT_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NOT_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    IP_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NOT_IP_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedScalarFieldContainer[str]
    not_principals: _containers.RepeatedScalarFieldContainer[str]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    not_namespaces: _containers.RepeatedScalarFieldContainer[str]
    ip_blocks: _containers.RepeatedScalarFieldContainer[str]
    not_ip_blocks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, principals: _Optional[_Iterable[str]] = ..., not_principals: _Optional[_Iterable[str]] = ..., namespaces: _Optional[_Iterable[str]] = ..., not_namespaces: _Optional[_Iterable[str]] = ..., ip_blocks: _Optional[_Iterable[str]] = ..., not_ip_blocks: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizationOperation(_message.Message):
    __slots__ = ("ports", "not_ports")
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NOT_PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedScalarFieldContainer[int]
    not_ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ports: _Optional[_Iterable[int]] = ..., not_ports: _Optional[_Iterable[int]] = ...) -> None: ...

class AuthorizationRule(_message.Message):
    __slots__ = ("sources", "operations", "l7")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    L7_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[AuthorizationSource]
    operations: _containers.RepeatedCompositeFieldContainer[AuthorizationOperation]
    l7: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sources: _Optional[_Iterable[_Union[AuthorizationSource, _Mapping]]] = ..., operations: _Optional[_Iterable[_Union[AuthorizationOperation, _Mapping]]] = ..., l7: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizationPolicy(_message.Message):
    __slots__ = ("name", "namespace", "action", "selector", "rules")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    action: str
    selector: _containers.ScalarMap[str, str]
    rules: _containers.RepeatedCompositeFieldContainer[AuthorizationRule]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., action: _Optional[str] = ..., selector: _Optional[_Mapping[str, str]] = ..., rules: _Optional[_Iterable[_Union[AuthorizationRule, _Mapping]]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "ip", "pod_cidr", "zone")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    name: str
    ip: str
    pod_cidr: str
    zone: str
    def __init__(self, name: _Optional[str] = ..., ip: _Optional[str] = ..., pod_cidr: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("version", "snapshot", "workloads", "removed_workloads", "services", "removed_services", "nodes", "removed_nodes", "trust_bundle_pem", "policies", "removed_policies")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_POLICIES_FIELD_NUMBER: _ClassVar[int]
    version: int
    snapshot: bool
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    removed_workloads: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    removed_services: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    removed_nodes: _containers.RepeatedScalarFieldContainer[str]
    trust_bundle_pem: bytes
    policies: _containers.RepeatedCompositeFieldContainer[AuthorizationPolicy]
    removed_policies: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., snapshot: _Optional[bool] = ..., workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., removed_workloads: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., removed_services: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., removed_nodes: _Optional[_Iterable[str]] = ..., trust_bundle_pem: _Optional[bytes] = ..., policies: _Optional[_Iterable[_Union[AuthorizationPolicy, _Mapping]]] = ..., removed_policies: _Optional[_Iterable[str]] = ...) -> None: ...

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
