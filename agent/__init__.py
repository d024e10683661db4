"""The node agent: eBPF steering, pod enrollment, the node proxy, config from the controller."""
