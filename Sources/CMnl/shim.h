#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <linux/veth.h>
#include <linux/gen_stats.h>
