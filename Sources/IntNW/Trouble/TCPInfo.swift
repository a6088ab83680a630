/// A safe reader of the kernel's full `struct tcp_info` (glibc's `struct tcp_info` is shorter; CShims.h carries the kernel's full layout)
/// plus the socket's unsent bytes, in named units: what trouble detection (see
/// docs/trouble-detection.md) and passive estimation read from a connection.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import LinuxSupport

/// One TCP_INFO snapshot of a connection.
public struct TCPInfoSnapshot: Sendable {
    /// TCP state (1 = ESTABLISHED, as in the kernel's `enum tcp_state`).
    public var state: UInt8
    /// Segments sent and not yet ACKed (`tcpi_unacked`): the note's "unACKed packets".
    public var unackedPackets: UInt32
    /// Milliseconds since data was last sent (`tcpi_last_data_sent`).
    public var lastDataSentMilliseconds: UInt32
    /// Milliseconds since any ACK was last received (`tcpi_last_ack_recv`); a data segment from the
    /// peer counts, since it carries an ACK.
    public var lastAckReceivedMilliseconds: UInt32
    /// Milliseconds since data was last received (`tcpi_last_data_recv`).
    public var lastDataReceivedMilliseconds: UInt32
    /// The kernel's smoothed RTT, microseconds (swells on stalled or bloated connections).
    public var rttMicroseconds: UInt32
    /// The kernel's RTT variance, microseconds.
    public var rttVarianceMicroseconds: UInt32
    /// The kernel's minimum RTT seen, microseconds (nil before the first sample).
    public var minRTTMicroseconds: UInt32?
    /// Current retransmission timeout, microseconds.
    public var rtoMicroseconds: UInt32
    /// Consecutive timeout retransmissions without progress (`tcpi_retransmits`).
    public var consecutiveRetransmits: UInt8
    /// Exponential backoff count of the RTO timer (`tcpi_backoff`).
    public var backoff: UInt8
    /// Retransmitted segments over the connection's life.
    public var totalRetransmits: UInt32
    /// Bytes the peer has cumulatively acknowledged (`tcpi_bytes_acked`): forward progress.
    public var bytesAcked: UInt64
    /// Bytes in the send queue not yet sent, as SIOCOUTQNSD reports them; nil when the ioctl failed.
    public var unsentBytes: Int?
    /// The full kernel struct, for anything else.
    public var raw: cshims_tcp_info

    /// Interprets a raw snapshot; `unsentBytes` comes from SIOCOUTQNSD (negative = unknown).
    public init(_ raw: cshims_tcp_info, unsentBytes: Int?) {
        self.raw = raw
        state = raw.tcpi_state
        unackedPackets = raw.tcpi_unacked
        lastDataSentMilliseconds = raw.tcpi_last_data_sent
        lastAckReceivedMilliseconds = raw.tcpi_last_ack_recv
        lastDataReceivedMilliseconds = raw.tcpi_last_data_recv
        rttMicroseconds = raw.tcpi_rtt
        rttVarianceMicroseconds = raw.tcpi_rttvar
        minRTTMicroseconds = raw.tcpi_min_rtt == 0 || raw.tcpi_min_rtt == UInt32.max ? nil : raw.tcpi_min_rtt
        rtoMicroseconds = raw.tcpi_rto
        consecutiveRetransmits = raw.tcpi_retransmits
        backoff = raw.tcpi_backoff
        totalRetransmits = raw.tcpi_total_retrans
        bytesAcked = raw.tcpi_bytes_acked
        self.unsentBytes = unsentBytes.flatMap { $0 >= 0 ? $0 : nil }
    }

    /// Monotonic ns of the last ACK, given the time the snapshot was taken (millisecond resolution).
    public func lastAckReceivedNs(snapshotAtNs nowNs: UInt64) -> UInt64 {
        let ago = UInt64(lastAckReceivedMilliseconds) * 1_000_000
        return nowNs > ago ? nowNs - ago : 0
    }
}

/// Reads TCP_INFO from a TCP socket.
public enum TCPInfoReader {
    /// The kernel's full `struct tcp_info` of `fd`. Fields newer than the running kernel are zero.
    public static func readRaw(fd: Int32) throws(IntNWError) -> cshims_tcp_info {
        var info = cshims_tcp_info()
        var len: UInt32 = 0
        if case .failure(let e) = Syscall.retrying({ cshims_get_tcp_info(fd, &info, &len) }) {
            throw .system(call: "getsockopt(TCP_INFO)", errno: e)
        }
        return info
    }

    /// TCP_INFO of `fd` plus its unsent bytes (SIOCOUTQNSD; nil in the snapshot if that ioctl fails).
    public static func read(fd: Int32) throws(IntNWError) -> TCPInfoSnapshot {
        let raw = try readRaw(fd: fd)
        let unsent = cshims_siocoutqnsd(fd)
        return TCPInfoSnapshot(raw, unsentBytes: unsent >= 0 ? Int(unsent) : nil)
    }
}
