// nodemesh traffic steering, attached to a node's cgroup (v2).
//
// connect4:    a TCP connect() from an enrolled pod's network namespace to a mesh destination
//              (a service VIP or a meshed pod IP) is rewritten to the pod-local outbound
//              listener; the original destination is remembered by socket cookie.
// sockops:     when such a connection is established, the remembered destination is re-keyed
//              by the connection's 4-tuple, which is what the proxy sees on accept().
// getpeername4: the application still sees the address it asked for.
//
// Only stable UAPI structures are used, so any installed linux-headers serve.
// NODEMESH_MARK (SO_MARK of the agent's own sockets) is passed in by the loader.

#include <uapi/linux/bpf.h>

#define AF_INET 2
#define SOCK_STREAM 1
#define HBONE_PORT 15008

// An enrolled pod: where its outbound listener is (both in network byte order).
struct pod_listener {
    u32 ip;
    u16 port;
    u16 pad;
};

struct orig_dst {
    u32 ip;    // network byte order
    u16 port;  // network byte order
    u16 pad;
};

// A connection as the proxy's accept() sees it; addresses and ports in network byte order.
struct tuple4 {
    u32 src_ip;
    u32 dst_ip;
    u16 src_port;
    u16 dst_port;
};

// netns cookie -> the pod's outbound listener. Only these namespaces are steered.
BPF_HASH(enrolled_pods, u64, struct pod_listener, 4096);
// IPv4 (network byte order) -> 1 service VIP, 2 meshed pod.
BPF_HASH(mesh_destinations, u32, u8, 65536);
// socket cookie -> original destination; kept for getpeername(), LRU bounds it.
BPF_TABLE("lru_hash", u64, struct orig_dst, orig_by_cookie, 65536);
// accepted connection -> original destination; LRU: entries age out, the proxy only reads.
BPF_TABLE("lru_hash", struct tuple4, struct orig_dst, orig_by_tuple, 65536);

int steer_connect4(struct bpf_sock_addr *ctx) {
    if (ctx->type != SOCK_STREAM)
        return 1;
    u64 netns = bpf_get_netns_cookie(ctx);
    struct pod_listener *pod = enrolled_pods.lookup(&netns);
    if (!pod)
        return 1;
    u32 dst_ip = ctx->user_ip4;
    u16 dst_port = (u16)ctx->user_port;
    if (dst_port == bpf_htons(HBONE_PORT))
        return 1;
    if (!mesh_destinations.lookup(&dst_ip))
        return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk || sk->mark == NODEMESH_MARK)  // the agent's own sockets: the loop guard
        return 1;
    struct orig_dst orig = {.ip = dst_ip, .port = dst_port};
    u64 cookie = bpf_get_socket_cookie(ctx);
    orig_by_cookie.update(&cookie, &orig);
    ctx->user_ip4 = pod->ip;
    ctx->user_port = pod->port;
    return 1;
}

int steer_sockops(struct bpf_sock_ops *skops) {
    if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || skops->family != AF_INET)
        return 1;
    u64 cookie = bpf_get_socket_cookie(skops);
    struct orig_dst *orig = orig_by_cookie.lookup(&cookie);
    if (!orig)
        return 1;
    struct orig_dst value = *orig;
    // UAPI: local_port is in host byte order; remote_port holds the network-order port in
    // the u32's upper half on little-endian hosts, which bpf_ntohl turns into host order.
    struct tuple4 key = {
        .src_ip = skops->local_ip4,
        .dst_ip = skops->remote_ip4,
        .src_port = bpf_htons((u16)skops->local_port),
        .dst_port = bpf_htons((u16)bpf_ntohl(skops->remote_port)),
    };
    orig_by_tuple.update(&key, &value);
    return 1;
}

int steer_getpeername4(struct bpf_sock_addr *ctx) {
    u64 cookie = bpf_get_socket_cookie(ctx);
    struct orig_dst *orig = orig_by_cookie.lookup(&cookie);
    if (!orig)
        return 1;
    ctx->user_ip4 = orig->ip;
    ctx->user_port = orig->port;
    return 1;
}
