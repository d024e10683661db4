"""The eBPF C programs, compiled by bcc when the agent starts.

A Python package only so that the sources install with the code (package data).
"""
