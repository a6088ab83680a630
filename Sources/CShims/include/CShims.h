// C glue for what Swift cannot import cleanly. Every symbol is prefixed `cshims_`.
// Struct layouts copied from kernel headers are pinned by _Static_asserts in shims.c.
#ifndef CSHIMS_H
#define CSHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

// ---- namespaces and threads --------------------------------------------------------------

/// Moves the calling thread into the network namespace open at `fd`. Returns 0 or -1 (errno set).
int cshims_setns_net(int fd);
/// Sets the calling thread's timer slack in nanoseconds (prctl PR_SET_TIMERSLACK).
int cshims_set_timer_slack_ns(unsigned long ns);
/// Gives the calling thread SCHED_FIFO at `priority` (1-99). Returns 0 or an errno value.
int cshims_set_realtime_priority(int priority);
/// CLOCK_MONOTONIC in nanoseconds.
uint64_t cshims_monotonic_ns(void);
/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
uint64_t cshims_realtime_ns(void);
/// Sleeps until the absolute CLOCK_MONOTONIC time `deadline_ns` (clock_nanosleep TIMER_ABSTIME).
int cshims_sleep_until_ns(uint64_t deadline_ns);
/// ppoll with a nanosecond timeout (`timeout_ns` < 0 waits forever). Returns ppoll's result.
int cshims_ppoll_ns(void *fds, unsigned long nfds, int64_t timeout_ns);

// ---- TUN ---------------------------------------------------------------------------------

/// Opens /dev/net/tun and attaches it to a TUN device named `name` with IFF_TUN|IFF_NO_PI
/// (plus IFF_VNET_HDR when `vnet_hdr` is non-zero). Returns the fd or -1 (errno set).
int cshims_tun_open(const char *name, int vnet_hdr);
/// TUNSETOFFLOAD with TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6 (`enable` != 0) or none.
int cshims_tun_set_offload(int fd, int enable);
/// TUNSETVNETHDRSZ.
int cshims_tun_set_vnet_hdr_size(int fd, int size);
/// TUNSETPERSIST.
int cshims_tun_set_persist(int fd, int persist);
/// TUNSETCARRIER (Linux 5.0+): the carrier the device's owner reports to the stack.
int cshims_tun_set_carrier(int fd, int up);
/// An eventfd (EFD_NONBLOCK|EFD_CLOEXEC) for waking poll loops. Returns the fd or -1.
int cshims_eventfd(void);
/// Adds 1 to an eventfd counter (wakes a poller). Returns 0 or -1.
int cshims_eventfd_kick(int fd);
/// Reads (and clears) an eventfd counter; returns 0 if nothing was pending.
uint64_t cshims_eventfd_drain(int fd);

/// Enables SO_TIMESTAMPNS on a datagram socket. Returns 0 or -1.
int cshims_enable_rx_timestamps(int fd);
/// recvmsg that also returns the kernel's receive timestamp (CLOCK_REALTIME ns, 0 if absent).
/// Returns recvmsg's result.
ssize_t cshims_recv_timestamped(int fd, void *buf, size_t len, uint64_t *rx_realtime_ns);

// ---- TCP ---------------------------------------------------------------------------------

/// The kernel's `struct tcp_info` (linux/tcp.h), which is longer than glibc's <netinet/tcp.h> one.
/// Fields newer than the running kernel are left zero (the kernel copies what it knows).
struct cshims_tcp_info {
    uint8_t  tcpi_state;
    uint8_t  tcpi_ca_state;
    uint8_t  tcpi_retransmits;
    uint8_t  tcpi_probes;
    uint8_t  tcpi_backoff;
    uint8_t  tcpi_options;
    uint8_t  tcpi_wscale;            // snd_wscale:4, rcv_wscale:4
    uint8_t  tcpi_app_limited_flags; // delivery_rate_app_limited:1, fastopen_client_fail:2

    uint32_t tcpi_rto;               // microseconds
    uint32_t tcpi_ato;               // microseconds
    uint32_t tcpi_snd_mss;
    uint32_t tcpi_rcv_mss;

    uint32_t tcpi_unacked;           // packets sent and not yet ACKed
    uint32_t tcpi_sacked;
    uint32_t tcpi_lost;
    uint32_t tcpi_retrans;
    uint32_t tcpi_fackets;

    uint32_t tcpi_last_data_sent;    // milliseconds ago
    uint32_t tcpi_last_ack_sent;
    uint32_t tcpi_last_data_recv;    // milliseconds ago
    uint32_t tcpi_last_ack_recv;     // milliseconds ago

    uint32_t tcpi_pmtu;
    uint32_t tcpi_rcv_ssthresh;
    uint32_t tcpi_rtt;               // smoothed RTT, microseconds
    uint32_t tcpi_rttvar;            // microseconds
    uint32_t tcpi_snd_ssthresh;
    uint32_t tcpi_snd_cwnd;
    uint32_t tcpi_advmss;
    uint32_t tcpi_reordering;

    uint32_t tcpi_rcv_rtt;
    uint32_t tcpi_rcv_space;

    uint32_t tcpi_total_retrans;

    uint64_t tcpi_pacing_rate;
    uint64_t tcpi_max_pacing_rate;
    uint64_t tcpi_bytes_acked;
    uint64_t tcpi_bytes_received;
    uint32_t tcpi_segs_out;
    uint32_t tcpi_segs_in;

    uint32_t tcpi_notsent_bytes;
    uint32_t tcpi_min_rtt;
    uint32_t tcpi_data_segs_in;
    uint32_t tcpi_data_segs_out;

    uint64_t tcpi_delivery_rate;

    uint64_t tcpi_busy_time;
    uint64_t tcpi_rwnd_limited;
    uint64_t tcpi_sndbuf_limited;

    uint32_t tcpi_delivered;
    uint32_t tcpi_delivered_ce;

    uint64_t tcpi_bytes_sent;
    uint64_t tcpi_bytes_retrans;
    uint32_t tcpi_dsack_dups;
    uint32_t tcpi_reord_seen;

    uint32_t tcpi_rcv_ooopack;
    uint32_t tcpi_snd_wnd;
    uint32_t tcpi_rcv_wnd;
    uint32_t tcpi_rehash;
    uint16_t tcpi_total_rto;
    uint16_t tcpi_total_rto_recoveries;
    uint32_t tcpi_total_rto_time;
};

/// getsockopt(TCP_INFO) into the full kernel struct. Returns 0 or -1 (errno set); `*len_out` gets
/// the number of bytes the kernel filled in.
int cshims_get_tcp_info(int fd, struct cshims_tcp_info *info, uint32_t *len_out);
/// Bytes in the socket's send queue not yet ACKed by the peer (ioctl SIOCOUTQ). -1 on error.
int cshims_siocoutq(int fd);
/// Bytes in the send queue not yet sent (ioctl SIOCOUTQNSD). -1 on error.
int cshims_siocoutqnsd(int fd);

// ---- netlink -----------------------------------------------------------------------------

/// MNL_SOCKET_BUFFER_SIZE from libmnl (a macro Swift cannot see).
size_t cshims_mnl_socket_buffer_size(void);

// ---- netem backend (unshare, ethtool) ----------------------------------------------------

/// Moves the calling thread into a new, anonymous network namespace (unshare CLONE_NEWNET). The
/// namespace disappears with the last thread or socket in it. Returns 0 or -1 (errno set).
int cshims_unshare_net(void);
/// Turns off GRO and every segmentation offload (TSO in all its variants, GSO, UDP/SCTP/... GSO) of
/// device `ifname` with ETHTOOL_SFEATURES, finding the feature bits by name (ETH_SS_FEATURES strings,
/// whose numbering changes between kernels). `fd` is any socket created in the device's namespace.
/// Features the device cannot change are left alone. Returns 0 or -1 (errno set).
int cshims_ethtool_disable_offloads(int fd, const char *ifname);

#endif
