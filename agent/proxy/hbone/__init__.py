"""HBONE: HTTP/2 CONNECT over mutual TLS between agents (port 15008)."""
