/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one ABI between the XDP relay program and mediator-dataplane: every map key and value, map
 * names, capacities and flag values. The Rust mirror lives in dataplane/src/abi.rs and a test
 * (dataplane/tests/abi.rs) checks it against this header through the compiled object's BTF.
 *
 * Rules: fixed-width integers and byte arrays only; no bool, no enums, no implicit padding (every
 * hole is an explicit `pad` field). Addresses and ports are in network byte order ("be") so the fast
 * path never swaps; everything else is host order ("host").
 */
#ifndef MEDIATOR_RELAY_ABI_H
#define MEDIATOR_RELAY_ABI_H

#include <linux/types.h>

/* Map names (as seen by aya and under the bpffs pin directory). */
#define MDP_MAP_STREAMS "mdp_streams"
#define MDP_MAP_STATS "mdp_stats"
#define MDP_MAP_TX_PORTS "mdp_tx_ports"
#define MDP_MAP_FLOOR "mdp_floor"
#define MDP_MAP_INJECT_CFG "mdp_inject_cfg"
#define MDP_MAP_INJECT_STREAMS "mdp_inject_streams"

/* Default capacities; the daemon may resize mdp_streams/mdp_stats at load time. */
#define MDP_DEFAULT_MAX_STREAMS 65536
#define MDP_MAX_TX_PORTS 64

/* The benchmark probe mdp_inject writes after the RTP header (tests/src/probe.rs reads it). */
#define MDP_PROBE_MAGIC 0x4d445042

/*
 * TTL / hop limit of every relayed packet, on both paths: the relay is the packet's destination
 * and sends it on as its own (as rtpengine and the userspace relay's sockets do), not a router
 * that decrements. The userspace relay sets it on its sockets (IP_TTL, IPV6_UNICAST_HOPS).
 */
#define MDP_RELAY_TTL 64

/* mdp_stream_key.family / mdp_stream_entry.family */
#define MDP_AF_INET 4
#define MDP_AF_INET6 6

/* mdp_stream_entry.policy: what to do with a packet whose source is not the expected remote. */
#define MDP_POLICY_ACCEPT_ANY 0       /* forward whatever the source */
#define MDP_POLICY_DROP_MISMATCH 1    /* strict source: drop and count (RTP bleed protection) */
#define MDP_POLICY_PASS_MISMATCH 2    /* hand it to userspace (NAT rebinding detection) */

/* mdp_stream_entry.flags */
#define MDP_FLAG_RTP_STATS 0x1        /* keep RFC 3550 receiver statistics for this stream */

/*
 * Key of mdp_streams: where the packet was sent to (one of the relay's local media sockets).
 * IPv4 addresses occupy addr[0..4], the rest zero.
 */
struct mdp_stream_key {
	__u8 addr[16];   /* be */
	__u16 port;      /* be */
	__u8 family;     /* MDP_AF_* */
	__u8 pad;
};

/* Value of mdp_streams: how to forward a packet that matched the key. */
struct mdp_stream_entry {
	__u8 expect_addr[16]; /* be: expected remote source */
	__u8 src_addr[16];    /* be: new source = the relay's address on the other side */
	__u8 dst_addr[16];    /* be: new destination = the peer's media address */
	__u16 expect_port;    /* be */
	__u16 src_port;       /* be */
	__u16 dst_port;       /* be */
	__u8 family;          /* MDP_AF_*; the same on both sides (no 4<->6 translation in XDP) */
	__u8 policy;          /* MDP_POLICY_* */
	__u32 stats_slot;     /* host: index into mdp_stats */
	__u32 clock_rate;     /* host: RTP clock rate in Hz, for jitter */
	__u32 flags;          /* host: MDP_FLAG_* */
	__u32 pad;
};

/*
 * Value of mdp_stats (a per-CPU array indexed by stats_slot): what this CPU forwarded for one
 * stream. Userspace sums the CPUs and merges the RTP receiver state (see dataplane/src/stats.rs).
 */
struct mdp_stream_stats {
	__u64 packets;        /* host: forwarded */
	__u64 bytes;          /* host: forwarded UDP payload bytes */
	__u64 last_seen_ns;   /* host: CLOCK_MONOTONIC of the last packet from the stream's peer
			       * (forwarded or not; a source mismatch does not count) */
	__u64 src_mismatch;   /* host: packets dropped or passed up for a wrong source */
	/* RTP receiver state, RFC 3550 appendix A.1 and A.8 */
	__u32 ssrc;           /* host */
	__u32 rtp_packets;    /* host: RTP packets seen by this CPU */
	__u32 base_seq;       /* host: first sequence number seen by this CPU */
	__u32 max_seq;        /* host: highest sequence number, extended with wrap cycles (cycles<<16 | seq) */
	__u32 jitter_q4;      /* host: interarrival jitter in RTP units, times 16 */
	__u32 last_transit;   /* host: arrival (RTP units) - RTP timestamp of the previous packet */
	__u32 rtp_init;       /* host: 1 once base_seq/last_transit hold a value */
	__u32 rtcp_seen_s;    /* host: 1 + CLOCK_MONOTONIC seconds of the last RTCP packet forwarded
			       * on this RTP stream (RTCP multiplexed on it, RFC 5761); 0: none */
};

/*
 * Value of mdp_floor (a two-entry array, one per direction): the benchmark floor program's fixed
 * rewrite. It forwards every IPv4 UDP packet that arrives on `in_ifindex` for a port in
 * [port_min, port_max] with this rewrite and does nothing else.
 */
struct mdp_floor_cfg {
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u32 src_addr;       /* be */
	__u32 dst_addr;       /* be */
	__u16 src_port;       /* be */
	__u16 dst_port;       /* be */
	__u16 port_min;       /* host */
	__u16 port_max;       /* host */
	__u32 ifindex;        /* host: egress device */
	__u32 in_ifindex;     /* host: ingress device this entry is for */
};

/*
 * mediator-bench's frame injector (program mdp_inject, run only through BPF_PROG_RUN with live
 * frames, never attached). Value of mdp_inject_cfg (one entry): each run turns the template frame
 * into the next RTP packet of the next stream, round robin, and redirects it out of `ifindex`.
 * Recycled frames come back as the relay rewrote them, so every header is written from `head`.
 */
struct mdp_inject_cfg {
	__u64 made;           /* host: frames made so far (the program's own counter) */
	__u64 start_ns;       /* host: CLOCK_MONOTONIC the pacing counts from; 0 = the next run */
	__u32 streams;        /* host: entries of mdp_inject_streams in use */
	__u32 ifindex;        /* host: device the frames leave by */
	__u32 samples;        /* host: RTP timestamp step per packet */
	__u32 rate;           /* host: frames per second; 0 = as fast as the runs go */
	__u32 burst;          /* host: frames made back to back once that many are due */
	__u32 bursting;       /* host: frames left in the current burst (the program's own) */
	__u16 base_check;     /* the template's UDP checksum with every field the program writes at zero,
	                         as the bytes lie in the frame */
	__u16 pad;
	__u32 pad2;
	__u8 head[44];        /* the template's Ethernet, IPv4 and UDP headers and first two RTP bytes */
	__u32 pad3;
};

/* Value of mdp_inject_streams (an array, index = stream in round-robin order). */
struct mdp_inject_stream {
	__u32 ssrc;           /* host */
	__u32 probe_id;       /* host: stream id in the benchmark probe */
	__u16 dst_port;       /* be: the relay port the stream is sent to */
	__u16 pad;
};

#endif
