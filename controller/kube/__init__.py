"""Kubernetes objects: parsing and validating Namespace, Pod and Service."""
