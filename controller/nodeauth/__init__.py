"""Which node is calling: the node join tokens and the check every gRPC call goes through."""
