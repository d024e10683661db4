// nodemesh plaintext capture: an sk_lookup program attached to each enrolled pod's network
// namespace (one BPF link per namespace).
//
// A TCP connection arriving at a meshed pod's own IP, on any port but the proxy's own
// (15001 outbound, 15006 plaintext, 15008 HBONE), from any address but the pod's own, is
// handed to the pod's plaintext listener (15006), which the agent owns. With bpf_sk_assign
// the accepted socket keeps the address the client asked for: getsockname() on it IS the
// original destination, so nothing needs to be remembered here.
//
// Not captured, so that nothing loops or changes for the pod itself:
//   - connections from the pod's own IP: the agent delivering to the app from inside the pod
//     (after HBONE or plaintext capture), and the pod's own connections to itself;
//   - connections to the proxy's ports (HBONE from other agents comes in on 15008);
//   - anything that is not TCP over IPv4, and addresses that are not an enrolled pod's.
//
// The listener map is keyed by the pod IP, not the namespace cookie: sk_lookup programs may
// not call bpf_get_netns_cookie (the verifier refuses it), and a pod's namespace only looks
// up sockets for addresses it owns, so its own IP selects its own listener.
//
// Fail closed without the agent: the links outlive the agent (pinned in bpffs), and with them
// this program and its maps. When the agent is gone its listeners are closed, and the kernel
// drops closed sockets from the socket map; a pod marked STRICT in pod_modes then has its
// plaintext dropped (SK_DROP: the client is refused) instead of delivered to its app. A
// PERMISSIVE pod's plaintext reaches the app directly, as without the mesh. A new agent loads
// this program afresh, fills its maps and switches each pinned link to it (BPF_LINK_UPDATE).
//
// Only stable UAPI structures are used. The loader passes OUTBOUND_PORT, PLAINTEXT_PORT and
// HBONE_PORT (host byte order, as ctx->local_port is), and MODE_STRICT.

#include <uapi/linux/bpf.h>

#define AF_INET 2
#define IPPROTO_TCP 6

// pod IPv4 (network byte order) -> the pod's plaintext listener (written as a socket fd).
BPF_TABLE("sockhash", u32, int, plaintext_listeners, 4096);
// pod IPv4 (network byte order) -> MODE_STRICT, or 0 for PERMISSIVE, for every captured pod.
BPF_HASH(pod_modes, u32, u8, 4096);

int capture_plaintext(struct bpf_sk_lookup *ctx) {
    if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
        return SK_PASS;
    u32 port = ctx->local_port;
    if (port == OUTBOUND_PORT || port == PLAINTEXT_PORT || port == HBONE_PORT)
        return SK_PASS;
    u32 pod_ip = ctx->local_ip4;
    if (ctx->remote_ip4 == pod_ip)  // the agent delivering, or the pod talking to itself
        return SK_PASS;
    struct bpf_sock *listener = (struct bpf_sock *)plaintext_listeners.lookup(&pod_ip);
    if (!listener) {  // no agent serving this pod: refuse it if STRICT, else as without the mesh
        u8 *mode = pod_modes.lookup(&pod_ip);
        return mode && *mode == MODE_STRICT ? SK_DROP : SK_PASS;
    }
    // Should the assignment fail (it cannot for a listening TCP socket of the same family),
    // the connection is delivered as if nothing were attached.
    bpf_sk_assign(ctx, listener, 0);
    bpf_sk_release(listener);
    return SK_PASS;
}
