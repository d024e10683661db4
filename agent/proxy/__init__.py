"""The node proxy: outbound capture, the node-to-node hop, inbound delivery, relaying."""
