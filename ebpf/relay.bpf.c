// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Mediator's XDP RTP/RTCP relay.
 *
 * It executes the forwarding entries mediator-dataplane installed and decides no policy of its own:
 * a packet whose destination is a relay socket with an entry is checked against the expected
 * source, rewritten (addresses, ports, MACs, TTL, checksums) and redirected out of the interface the
 * kernel's FIB names. Everything it does not understand or cannot finish — other protocols,
 * fragments, IP options, IPv6 extension headers, unknown destinations, a missing neighbour, an
 * egress device without XDP — goes up the stack with XDP_PASS, where the userspace relay's socket
 * picks it up. The map ABI is relay_abi.h.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_DEFAULT_MAX_STREAMS);
	__type(key, struct mdp_stream_key);
	__type(value, struct mdp_stream_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_streams SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_DEFAULT_MAX_STREAMS);
	__type(key, __u32);
	__type(value, struct mdp_stream_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MDP_MAX_TX_PORTS);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct mdp_floor_cfg);
} mdp_floor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mdp_inject_cfg);
} mdp_inject_cfg SEC(".maps");

/* One entry by default so the daemon's load costs nothing; mediator-bench resizes it at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mdp_inject_stream);
} mdp_inject_streams SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

/* Ones'-complement helpers for RFC 1624 incremental updates: HC' = ~(~HC + ~m + m'). */
static __always_inline __u32 csum_sub16(__u32 sum, __u16 old)
{
	return sum + (__u16)~old;
}

static __always_inline __u32 csum_bytes(__u32 sum, const __u8 *old, const __u8 *new, int len)
{
#pragma unroll
	for (int i = 0; i < len; i += 2) {
		sum = csum_sub16(sum, *(const __u16 *)(old + i));
		sum += *(const __u16 *)(new + i);
	}
	return sum;
}

/* Compares addresses in 32-bit words (clang may not inline __builtin_memcmp for BPF). */
static __always_inline int addr_eq(const void *a, const void *b, int len)
{
	__u32 diff = 0;
#pragma unroll
	for (int i = 0; i < len; i += 4)
		diff |= *(const __u32 *)(a + i) ^ *(const __u32 *)(b + i);
	return diff == 0;
}

static __always_inline __u16 csum_finish(__u16 check, __u32 delta)
{
	__u32 sum = (__u16)~check;
	sum += (delta & 0xffff) + (delta >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * RFC 3550 receiver statistics (appendix A.1 sequence tracking, A.8 jitter) for one RTP packet.
 * Per-CPU, so no atomics: userspace merges the CPUs.
 */
static __always_inline void rtp_account(struct mdp_stream_stats *st, const struct mdp_stream_entry *e,
					void *payload, void *end, __u16 udp_len, __u64 now)
{
	__u8 *p = payload;
	/* Bounded by the UDP length too, not only the frame: Ethernet padding is not payload. An
	 * RTCP header is 8 bytes, an RTP one 12. */
	if (udp_len < sizeof(struct udphdr) + 8 || (void *)(p + 8) > end)
		return;
	if ((p[0] >> 6) != 2)
		return;
	/* RTCP multiplexed on the RTP port (RFC 5761): packet types 192..223. Its sighting is what
	 * dead-call detection watches on an rtcp-mux session. */
	if (p[1] >= 192 && p[1] <= 223) {
		st->rtcp_seen_s = (__u32)(now / 1000000000) + 1;
		return;
	}
	if (udp_len < sizeof(struct udphdr) + 12 || (void *)(p + 12) > end)
		return;
	__u16 seq = ((__u16)p[2] << 8) | p[3];
	__u32 ts = ((__u32)p[4] << 24) | ((__u32)p[5] << 16) | ((__u32)p[6] << 8) | p[7];
	__u32 ssrc = ((__u32)p[8] << 24) | ((__u32)p[9] << 16) | ((__u32)p[10] << 8) | p[11];
	__u32 arrival = 0;
	if (e->clock_rate)
		arrival = (__u32)((now / 1000) * e->clock_rate / 1000000);
	__u32 transit = arrival - ts;

	if (!st->rtp_init || st->ssrc != ssrc) {
		st->ssrc = ssrc;
		st->base_seq = seq;
		st->max_seq = seq;
		st->rtp_packets = 1;
		st->jitter_q4 = 0;
		st->last_transit = transit;
		st->rtp_init = 1;
		return;
	}
	__u16 max16 = (__u16)st->max_seq;
	__u16 delta = seq - max16;
	if (delta != 0 && delta < 0x8000) {
		__u32 cycles = st->max_seq & 0xffff0000;
		if (seq < max16)
			cycles += 0x10000;
		st->max_seq = cycles | seq;
	}
	st->rtp_packets++;
	if (e->clock_rate) {
		__s32 d = (__s32)(transit - st->last_transit);
		if (d < 0)
			d = -d;
		st->last_transit = transit;
		st->jitter_q4 += (__u32)d - ((st->jitter_q4 + 8) >> 4);
	}
}

/* The verdict once a packet is known to belong to a stream and its source was checked. */
static __always_inline int source_verdict(const struct mdp_stream_entry *e, struct mdp_stream_stats *st,
					  int match)
{
	if (match || e->policy == MDP_POLICY_ACCEPT_ANY)
		return -1; /* forward */
	st->src_mismatch++;
	return e->policy == MDP_POLICY_DROP_MISMATCH ? XDP_DROP : XDP_PASS;
}

/*
 * Final step shared by both families: MACs from the FIB, drop the VLAN tag when the FIB sends the
 * packet out of an untagged port, count, redirect.
 */
static __always_inline int emit(struct xdp_md *ctx, struct bpf_fib_lookup *fib, int vlan,
				struct mdp_stream_stats *st, __u16 udp_len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data + (vlan ? sizeof(struct vlan_tag) : 0);
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	/* With a tag, eth now overlaps the old header so that eth->h_proto is the inner type. */
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	if (vlan && bpf_xdp_adjust_head(ctx, (int)sizeof(struct vlan_tag)))
		return XDP_DROP; /* headers already rewritten: the original packet is gone */
	st->packets++;
	st->bytes += udp_len > sizeof(struct udphdr) ? udp_len - sizeof(struct udphdr) : 0;
	return bpf_redirect_map(&mdp_tx_ports, fib->ifindex, 0);
}

static __always_inline int fib_ready(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	long rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return 0; /* no route, no neighbour yet, ...: userspace sends it and the kernel resolves */
	return bpf_map_lookup_elem(&mdp_tx_ports, &fib->ifindex) != NULL;
}

/* The stream a packet was sent to, after its source was checked. */
struct stream_match {
	struct mdp_stream_entry *e;
	struct mdp_stream_stats *st;
	__u64 now;
};

/*
 * Looks up the stream for (daddr, udp->dest), counts the sighting and checks the source against
 * the entry's policy. Returns -1 with `m` filled when the packet is to be forwarded, else the
 * verdict. `alen` is 4 or 16, a constant after inlining.
 */
static __always_inline int match_stream(const void *daddr, const void *saddr, int alen, __u8 family,
					struct udphdr *udp, struct stream_match *m)
{
	struct mdp_stream_key key = {};
	__builtin_memcpy(key.addr, daddr, alen);
	key.port = udp->dest;
	key.family = family;
	m->e = bpf_map_lookup_elem(&mdp_streams, &key);
	if (!m->e)
		return XDP_PASS;
	m->st = bpf_map_lookup_elem(&mdp_stats, &m->e->stats_slot);
	if (!m->st)
		return XDP_PASS;
	m->now = bpf_ktime_get_ns();
	int match = udp->source == m->e->expect_port && addr_eq(saddr, m->e->expect_addr, alen);
	/* Only the peer keeps a stream alive: a stranger's packets (an RTP-bleed probe) are no sign
	 * of a live call. One passed up for a new source is userspace's to count once it decides. */
	if (match || m->e->policy == MDP_POLICY_ACCEPT_ANY)
		m->st->last_seen_ns = m->now;
	int verdict = source_verdict(m->e, m->st, match);
	if (verdict >= 0)
		return verdict;
	if (m->e->family != family) /* no 4<->6 translation here */
		return XDP_PASS;
	return -1;
}

/*
 * Whether the UDP length is the IP length less the IP header and the frame holds all of it: a
 * datagram whose lengths disagree (a forged or truncated one) is the stack's to judge (it drops
 * it and counts the error), never forwarded with a false length.
 */
static __always_inline int lengths_agree(struct udphdr *udp, void *end, __u32 ip_len, __u32 ip_hdr)
{
	__u32 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || ip_len < ip_hdr || udp_len != ip_len - ip_hdr)
		return 0;
	return (void *)udp + udp_len <= end;
}

/* The FIB query for the rewritten packet: from the relay's other side to the peer. */
static __always_inline void fib_init(struct bpf_fib_lookup *fib, struct xdp_md *ctx,
				     const struct mdp_stream_entry *e, __u8 af, __u16 tot_len)
{
	fib->family = af;
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = e->src_port;
	fib->dport = e->dst_port;
	fib->tot_len = tot_len;
	fib->ifindex = ctx->ingress_ifindex;
}

static __always_inline int relay_v4(struct xdp_md *ctx, struct iphdr *ip, void *end, int vlan)
{
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	if (!lengths_agree(udp, end, bpf_ntohs(ip->tot_len), sizeof(*ip)))
		return XDP_PASS;

	struct stream_match m;
	int verdict = match_stream(&ip->daddr, &ip->saddr, 4, MDP_AF_INET, udp, &m);
	if (verdict >= 0)
		return verdict;
	struct mdp_stream_entry *e = m.e;
	struct mdp_stream_stats *st = m.st;

	struct bpf_fib_lookup fib = {};
	fib_init(&fib, ctx, e, AF_INET, bpf_ntohs(ip->tot_len));
	fib.tos = ip->tos;
	__builtin_memcpy(&fib.ipv4_src, e->src_addr, 4);
	__builtin_memcpy(&fib.ipv4_dst, e->dst_addr, 4);
	if (!fib_ready(ctx, &fib))
		return XDP_PASS;

	/* Counted as RTP only when it is really going out through XDP. */
	rtp_account(st, e, udp + 1, end, bpf_ntohs(udp->len), m.now);

	__u32 addrs = csum_bytes(0, (__u8 *)&ip->saddr, e->src_addr, 4);
	addrs = csum_bytes(addrs, (__u8 *)&ip->daddr, e->dst_addr, 4);
	__u32 ports = csum_sub16(0, udp->source) + e->src_port;
	ports = csum_sub16(ports, udp->dest) + e->dst_port;
	__u16 old_ttl = *(__u16 *)&ip->ttl; /* ttl and protocol share one checksum word */
	ip->ttl = MDP_RELAY_TTL;
	__u32 ipd = csum_sub16(addrs, old_ttl) + *(__u16 *)&ip->ttl;
	ip->check = csum_finish(ip->check, ipd);
	if (udp->check) { /* 0 = no checksum on IPv4 (RFC 768): leave it so */
		__u16 c = csum_finish(udp->check, addrs + ports);
		udp->check = c ? c : 0xffff;
	}
	__builtin_memcpy(&ip->saddr, e->src_addr, 4);
	__builtin_memcpy(&ip->daddr, e->dst_addr, 4);
	udp->source = e->src_port;
	udp->dest = e->dst_port;
	return emit(ctx, &fib, vlan, st, bpf_ntohs(udp->len));
}

static __always_inline int relay_v6(struct xdp_md *ctx, struct ipv6hdr *ip, void *end, int vlan)
{
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	if (ip->nexthdr != IPPROTO_UDP) /* extension headers, fragments: the stack's job */
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	if (udp->check == 0) /* invalid on IPv6 (RFC 8200): the stack drops it, so do not forward it */
		return XDP_PASS;
	if (!lengths_agree(udp, end, bpf_ntohs(ip->payload_len) + sizeof(*ip), sizeof(*ip)))
		return XDP_PASS;

	struct stream_match m;
	int verdict = match_stream(&ip->daddr, &ip->saddr, 16, MDP_AF_INET6, udp, &m);
	if (verdict >= 0)
		return verdict;
	struct mdp_stream_entry *e = m.e;
	struct mdp_stream_stats *st = m.st;

	struct bpf_fib_lookup fib = {};
	fib_init(&fib, ctx, e, AF_INET6, bpf_ntohs(ip->payload_len) + sizeof(*ip));
	__builtin_memcpy(fib.ipv6_src, e->src_addr, 16);
	__builtin_memcpy(fib.ipv6_dst, e->dst_addr, 16);
	if (!fib_ready(ctx, &fib))
		return XDP_PASS;

	rtp_account(st, e, udp + 1, end, bpf_ntohs(udp->len), m.now);

	/* IPv6 has no header checksum; the UDP checksum is mandatory and covers the addresses. */
	__u32 d = csum_bytes(0, (__u8 *)&ip->saddr, e->src_addr, 16);
	d = csum_bytes(d, (__u8 *)&ip->daddr, e->dst_addr, 16);
	d = csum_sub16(d, udp->source) + e->src_port;
	d = csum_sub16(d, udp->dest) + e->dst_port;
	__u16 c = csum_finish(udp->check, d);
	udp->check = c ? c : 0xffff;
	ip->hop_limit = MDP_RELAY_TTL;
	__builtin_memcpy(&ip->saddr, e->src_addr, 16);
	__builtin_memcpy(&ip->daddr, e->dst_addr, 16);
	udp->source = e->src_port;
	udp->dest = e->dst_port;
	return emit(ctx, &fib, vlan, st, bpf_ntohs(udp->len));
}

SEC("xdp")
int mdp_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	int vlan = 0;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_tag *tag = l3;
		if ((void *)(tag + 1) > end)
			return XDP_PASS;
		proto = tag->proto;
		l3 = tag + 1;
		vlan = 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return relay_v4(ctx, l3, end, vlan);
	if (proto == bpf_htons(ETH_P_IPV6))
		return relay_v6(ctx, l3, end, vlan);
	return XDP_PASS;
}

/*
 * The benchmark floor: the least an XDP relay must do on this path (match a port range, rewrite
 * addresses, ports, MACs and checksums from a fixed configuration per direction, redirect).
 * mediator-bench compares mdp_relay against it.
 */
SEC("xdp")
int mdp_floor_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__u32 key = 0;
	struct mdp_floor_cfg *c = bpf_map_lookup_elem(&mdp_floor, &key);
	if (c && c->in_ifindex != ctx->ingress_ifindex) {
		key = 1;
		c = bpf_map_lookup_elem(&mdp_floor, &key);
	}
	if (!c || c->in_ifindex != ctx->ingress_ifindex)
		return XDP_PASS;
	__u16 port = bpf_ntohs(udp->dest);
	if (port < c->port_min || port > c->port_max)
		return XDP_PASS;
	__u32 addrs = csum_bytes(0, (__u8 *)&ip->saddr, (__u8 *)&c->src_addr, 4);
	addrs = csum_bytes(addrs, (__u8 *)&ip->daddr, (__u8 *)&c->dst_addr, 4);
	__u32 ports = csum_sub16(0, udp->source) + c->src_port;
	ports = csum_sub16(ports, udp->dest) + c->dst_port;
	ip->check = csum_finish(ip->check, addrs);
	if (udp->check) {
		__u16 s = csum_finish(udp->check, addrs + ports);
		udp->check = s ? s : 0xffff;
	}
	ip->saddr = c->src_addr;
	ip->daddr = c->dst_addr;
	udp->source = c->src_port;
	udp->dest = c->dst_port;
	__builtin_memcpy(eth->h_dest, c->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, c->src_mac, ETH_ALEN);
	return bpf_redirect_map(&mdp_tx_ports, c->ifindex, 0);
}

/* Attached to the peers of veths that receive redirected frames (see LAB.md). */
SEC("xdp")
int mdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}


/* The words mdp_inject writes, in frame order; all at even offsets from the UDP header, so their
 * 16-bit ones'-complement sum is what they add to the UDP checksum. No implicit padding. */
struct inject_words {
	__be16 dst_port;
	__be16 rtp_seq;
	__be32 rtp_ts;
	__be32 ssrc;
	__be32 magic;
	__be32 probe_id;
	__be32 seq_hi;
	__be32 seq_lo;
	__be32 sent_hi;
	__be32 sent_lo;
};

/*
 * mediator-bench's frame injector, run with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on a template
 * frame (Ethernet/IPv4/UDP/RTP with a payload of at least the probe). Each run makes the next packet
 * of the next stream: destination port, RTP sequence, timestamp and SSRC, and the probe (stream,
 * sequence, CLOCK_MONOTONIC send time); the UDP checksum is the template's plus those words. The
 * frame's previous contents are never read: a recycled page comes back as the relay under test
 * rewrote it, so the headers are written afresh from the template's copy in the config.
 *
 * Pacing: a run makes a frame only when one is due at `rate` (in bursts of `burst`); the others end
 * in XDP_DROP having made nothing. After a pause (between BPF_PROG_RUN calls) the missed frames
 * are skipped, not sent in one flood, so `made` is what was really offered.
 */
SEC("xdp")
int mdp_inject(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *rtp = (void *)(udp + 1);
	if ((void *)(rtp + 12 + 24) > end)
		return XDP_ABORTED;
	__u32 zero = 0;
	struct mdp_inject_cfg *c = bpf_map_lookup_elem(&mdp_inject_cfg, &zero);
	if (!c || c->streams == 0)
		return XDP_ABORTED;
	__u64 now = bpf_ktime_get_ns();
	if (c->rate) {
		__u32 burst = c->burst ? c->burst : 1;
		if (c->start_ns == 0 || c->start_ns > now) {
			/* (Re)start the clock with the next burst due now. */
			__u64 behind = (c->made + burst) * 1000000000ULL / c->rate;
			c->start_ns = now - (behind < now ? behind : now);
		}
		__u64 due = (now - c->start_ns) * c->rate / 1000000000ULL;
		if (due > c->made + 4 * (__u64)burst) {
			/* Fell behind (a pause between calls): skip what was missed. */
			c->start_ns = now - (c->made + burst) * 1000000000ULL / c->rate;
			due = c->made + burst;
		}
		if (c->bursting == 0) {
			if (due < c->made + burst)
				return XDP_DROP;
			c->bursting = burst;
		}
		c->bursting--;
	}
	__u64 n = c->made++;
	__u32 idx = n % c->streams;
	__u64 seq = n / c->streams;
	struct mdp_inject_stream *s = bpf_map_lookup_elem(&mdp_inject_streams, &idx);
	if (!s)
		return XDP_ABORTED;
	struct inject_words w = {
		.dst_port = s->dst_port,
		.rtp_seq = bpf_htons((__u16)seq),
		.rtp_ts = bpf_htonl((__u32)(seq * c->samples)),
		.ssrc = bpf_htonl(s->ssrc),
		.magic = bpf_htonl(MDP_PROBE_MAGIC),
		.probe_id = bpf_htonl(s->probe_id),
		.seq_hi = bpf_htonl((__u32)(seq >> 32)),
		.seq_lo = bpf_htonl((__u32)seq),
		.sent_hi = bpf_htonl((__u32)(now >> 32)),
		.sent_lo = bpf_htonl((__u32)now),
	};
	__u32 sum = (__u16)~c->base_check;
	const __u16 *p = (const __u16 *)&w;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(w) / 2); i++)
		sum += p[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	__u16 check = (__u16)~sum;
	__builtin_memcpy(data, c->head, sizeof(c->head));
	udp->dest = w.dst_port;
	udp->check = check ? check : 0xffff;
	__builtin_memcpy(rtp + 2, &w.rtp_seq, 2);
	__builtin_memcpy(rtp + 4, &w.rtp_ts, 4);
	__builtin_memcpy(rtp + 8, &w.ssrc, 4);
	__builtin_memcpy(rtp + 12, &w.magic, 24);
	return bpf_redirect(c->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
