"""TLS for the agent: the SSL contexts its workloads present, and who a peer is.

Kept apart from the proxy (as ztunnel keeps ``tls/``) so that the certificate manager, which
builds contexts, and the proxy, which uses them, both sit above it.
"""
