#define _GNU_SOURCE
#include "CShims.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <linux/ethtool.h>

// Pin the copied layout to the kernel header this was built against.
#define PIN(field) _Static_assert(offsetof(struct cshims_tcp_info, field) == offsetof(struct tcp_info, field), #field)
PIN(tcpi_rto);
PIN(tcpi_unacked);
PIN(tcpi_last_data_sent);
PIN(tcpi_last_ack_recv);
PIN(tcpi_rtt);
PIN(tcpi_rttvar);
PIN(tcpi_snd_cwnd);
PIN(tcpi_total_retrans);
PIN(tcpi_pacing_rate);
PIN(tcpi_bytes_acked);
PIN(tcpi_notsent_bytes);
PIN(tcpi_min_rtt);
PIN(tcpi_delivery_rate);
PIN(tcpi_busy_time);
PIN(tcpi_delivered);
PIN(tcpi_bytes_sent);
PIN(tcpi_bytes_retrans);
PIN(tcpi_dsack_dups);
PIN(tcpi_reord_seen);
PIN(tcpi_rcv_ooopack);
PIN(tcpi_snd_wnd);
#undef PIN

int cshims_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int cshims_set_timer_slack_ns(unsigned long ns) { return prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0); }

int cshims_set_realtime_priority(int priority) {
    struct sched_param sp = { .sched_priority = priority };
    return pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

uint64_t cshims_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cshims_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cshims_sleep_until_ns(uint64_t deadline_ns) {
    struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
                           .tv_nsec = (long)(deadline_ns % 1000000000ull) };
    int rc;
    do {
        rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    } while (rc == EINTR);
    if (rc != 0) { errno = rc; return -1; }
    return 0;
}

int cshims_ppoll_ns(void *fds, unsigned long nfds, int64_t timeout_ns) {
    if (timeout_ns < 0) return ppoll((struct pollfd *)fds, nfds, NULL, NULL);
    struct timespec ts = { .tv_sec = (time_t)(timeout_ns / 1000000000ll),
                           .tv_nsec = (long)(timeout_ns % 1000000000ll) };
    return ppoll((struct pollfd *)fds, nfds, &ts, NULL);
}

int cshims_tun_open(const char *name, int vnet_hdr) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cshims_tun_set_offload(int fd, int enable) {
    unsigned long flags = enable ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0;
    return ioctl(fd, TUNSETOFFLOAD, flags);
}

int cshims_tun_set_vnet_hdr_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }

int cshims_tun_set_persist(int fd, int persist) { return ioctl(fd, TUNSETPERSIST, (unsigned long)persist); }

int cshims_tun_set_carrier(int fd, int up) {
    int v = up ? 1 : 0;
    return ioctl(fd, TUNSETCARRIER, &v);
}

int cshims_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cshims_eventfd_kick(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof one) == sizeof one ? 0 : -1;
}

uint64_t cshims_eventfd_drain(int fd) {
    uint64_t v = 0;
    if (read(fd, &v, sizeof v) != sizeof v) return 0;
    return v;
}

int cshims_enable_rx_timestamps(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

ssize_t cshims_recv_timestamped(int fd, void *buf, size_t len, uint64_t *rx_realtime_ns) {
    char control[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
    ssize_t n = recvmsg(fd, &msg, 0);
    *rx_realtime_ns = 0;
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            *rx_realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
    }
    return n;
}

int cshims_get_tcp_info(int fd, struct cshims_tcp_info *info, uint32_t *len_out) {
    memset(info, 0, sizeof *info);
    socklen_t len = sizeof *info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, &len) < 0) return -1;
    if (len_out) *len_out = (uint32_t)len;
    return 0;
}

int cshims_siocoutq(int fd) {
    int n = 0;
    if (ioctl(fd, SIOCOUTQ, &n) < 0) return -1;
    return n;
}

int cshims_siocoutqnsd(int fd) {
    int n = 0;
    if (ioctl(fd, SIOCOUTQNSD, &n) < 0) return -1;
    return n;
}

size_t cshims_mnl_socket_buffer_size(void) {
    // libmnl's MNL_SOCKET_BUFFER_SIZE: min(page size, 8192), a macro calling sysconf.
    long page = sysconf(_SC_PAGESIZE);
    return (size_t)(page < 8192L ? page : 8192L);
}

int cshims_unshare_net(void) { return unshare(CLONE_NEWNET); }

static int ethtool_ioctl(int fd, const char *ifname, void *data) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = data;
    return ioctl(fd, SIOCETHTOOL, &ifr);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int cshims_ethtool_disable_offloads(int fd, const char *ifname) {
    // The legacy ETHTOOL_STSO misses newer TSO bits (e.g. tx-tcp-accecn-segmentation), so select
    // features by name: "rx-gro" and everything ending in "-segmentation".
    int rc = -1, saved = 0;
    struct ethtool_gstrings *names = NULL;
    struct ethtool_sfeatures *set = NULL;
    struct ethtool_sset_info *info = calloc(1, sizeof *info + sizeof(uint32_t));
    if (!info) return -1;
    info->cmd = ETHTOOL_GSSET_INFO;
    info->sset_mask = 1ULL << ETH_SS_FEATURES;
    if (ethtool_ioctl(fd, ifname, info) < 0) goto out;
    if (!(info->sset_mask & (1ULL << ETH_SS_FEATURES))) { errno = EOPNOTSUPP; goto out; }
    uint32_t count = info->data[0];
    uint32_t blocks = (count + 31) / 32;

    names = calloc(1, sizeof *names + (size_t)count * ETH_GSTRING_LEN);
    set = calloc(1, sizeof *set + (size_t)blocks * sizeof(struct ethtool_set_features_block));
    if (!names || !set) goto out;
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_FEATURES;
    names->len = count;
    if (ethtool_ioctl(fd, ifname, names) < 0) goto out;

    set->cmd = ETHTOOL_SFEATURES;
    set->size = blocks;
    for (uint32_t i = 0; i < count; i++) {
        char name[ETH_GSTRING_LEN + 1];
        memcpy(name, names->data + (size_t)i * ETH_GSTRING_LEN, ETH_GSTRING_LEN);
        name[ETH_GSTRING_LEN] = 0;
        if (strcmp(name, "rx-gro") == 0 || ends_with(name, "-segmentation"))
            set->features[i / 32].valid |= 1u << (i % 32);  // requested bit stays 0: off
    }
    // A positive result only flags bits the device cannot change (ETHTOOL_F_UNSUPPORTED/WISH).
    if (ethtool_ioctl(fd, ifname, set) < 0) goto out;
    rc = 0;
out:
    saved = errno;
    free(info);
    free(names);
    free(set);
    errno = saved;
    return rc;
}
