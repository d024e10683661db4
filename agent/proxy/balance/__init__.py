"""A Service's TrafficPolicy at work in the source agent, sans-IO: one module per concept.

``endpoint`` (what this agent learns of each endpoint from its own connects), ``strategies``
(round robin, least connections, power of two choices), ``locality`` (node, zone, any),
``split`` (a TCPRoute's weighted backends), ``outlier`` (ejection), ``breaker`` (concurrent
and pending limits), ``ratelimit`` (token buckets), ``idle`` (the idle-timeout sweep), and
``balancer``, which composes them per view so that a connection's decision costs a few dict
lookups. Clocks and random sources are injected: tests drive them.
"""
