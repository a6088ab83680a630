#if canImport(Glibc)
import Glibc
#endif
import CShims
import Emulation
import Foundation
import LinuxSupport

/// Whole-system measurements between the client and server namespaces of a testbed, used by
/// `intnw-bench` (plain programs, no timing assertions).
public enum NamespaceMeasure {
    /// Bulk TCP from `source` in the client namespace to the server's `serviceAddress`, for `seconds`.
    /// Returns goodput in bits per second over the window after `warmupSeconds` (excludes slow start).
    public static func tcpGoodput(spec: TopologySpec, source: String, port: UInt16, seconds: Double,
                                  warmupSeconds: Double = 2) async throws -> Double {
        let listener = try NamespaceSocket.listen(ns: spec.serverNamespace, ip: "0.0.0.0", port: port)
        defer { close(listener) }
        let receiver = Task.detached { () throws -> Double in
            try await onThread {
                let c = accept(listener, nil, nil)
                try NamespaceSocket.check(c, "accept")
                defer { close(c) }
                let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
                defer { buf.deallocate() }
                var start = 0.0, counted = 0
                let t0 = NamespaceSocket.nowSeconds()
                var last = t0
                while true {
                    let n = recv(c, buf, 1 << 20, 0)
                    if n <= 0 { break }
                    last = NamespaceSocket.nowSeconds()
                    if last - t0 >= warmupSeconds {
                        if start == 0 { start = last } else { counted += n }
                    }
                }
                return start > 0 && last > start ? Double(counted) * 8 / (last - start) : 0
            }
        }
        let fd = try NamespaceSocket.tcp(ns: spec.clientNamespace, source: source)
        try NamespaceSocket.connect(fd, spec.serviceAddress, port)
        try await onThread {
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buf.deallocate() }
            memset(buf, 0x5A, 1 << 20)
            let end = NamespaceSocket.nowSeconds() + seconds
            while NamespaceSocket.nowSeconds() < end {
                if case .failure = Syscall.retrying({ send(fd, buf, 1 << 20, Int32(MSG_NOSIGNAL)) }) { break }
            }
            shutdown(fd, Int32(SHUT_WR))
        }
        let bps = try await receiver.value
        close(fd)
        return bps
    }

    /// One-way delay error of UDP probes (`probeBytes` IP bytes each, one every `intervalSeconds`) sent
    /// from the client's `source` to the server: observed one-way delay minus the configured delay plus
    /// the probe's serialization time. Both ends share the kernel's clock: the sender stamps
    /// CLOCK_REALTIME just before `sendto`, the receiver uses the kernel's receive timestamp
    /// (SO_TIMESTAMPNS), so scheduling delays of the receiving thread do not count.
    /// Returns the absolute errors in microseconds.
    public static func udpDelayErrors(spec: TopologySpec, source: String, port: UInt16, count: Int,
                                      intervalSeconds: Double, probeBytes: Int,
                                      configuredOneWayMicroseconds: Double) async throws -> [Double] {
        let payload = max(16, probeBytes - 28)
        let rx = try NamespaceSocket.udp(ns: spec.serverNamespace, bindIP: spec.serviceAddress, port: port)
        defer { close(rx) }
        NamespaceSocket.setReceiveTimeout(rx, seconds: 1)
        _ = cshims_enable_rx_timestamps(rx)
        let receiver = Task.detached { () throws -> [Double] in
            try await onThread {
                var errors: [Double] = []
                var buf = [UInt8](repeating: 0, count: 2048)
                var timeouts = 0
                while errors.count < count && timeouts < 3 {
                    var now: UInt64 = 0
                    let n = buf.withUnsafeMutableBytes { cshims_recv_timestamped(rx, $0.baseAddress, $0.count, &now) }
                    if n < 8 || now == 0 { timeouts += 1; continue }
                    let sent = buf.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    errors.append(abs(Double(now &- sent) / 1000 - configuredOneWayMicroseconds))
                }
                return errors
            }
        }
        let tx = try NamespaceSocket.udp(ns: spec.clientNamespace, bindIP: source, port: 0)
        defer { close(tx) }
        try await onThread {
            // A probe stamped and then preempted before sendto would count against the emulator.
            _ = cshims_set_realtime_priority(40)
            let dst = try NamespaceSocket.endpoint(spec.serviceAddress, port)
            var buf = [UInt8](repeating: 0, count: payload)
            let start = cshims_monotonic_ns()
            for i in 0..<count {
                _ = cshims_sleep_until_ns(start + UInt64(Double(i) * intervalSeconds * 1e9))
                var t = cshims_realtime_ns()
                withUnsafeBytes(of: &t) { for j in 0..<8 { buf[j] = $0[j] } }
                // A probe that cannot be sent would make the measurement wrong: stop with the reason.
                _ = try Syscall.check("sendto \(dst)") { dst.withSockaddr { sendto(tx, buf, buf.count, 0, $0, $1) } }
            }
        }
        return try await receiver.value
    }
}
