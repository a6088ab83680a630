#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import SystemPackage

/// Mahimahi-compatible per-direction event log: `<ms> + <bytes>` (arrival), `<ms> - <bytes> <delay ms>`
/// (departure with the packet's total delay), `<ms> d <bytes>` (drop), times in milliseconds since the
/// log opened. Buffered in a fixed array and written with write(2); only touched when enabled.
final class EventLog {
    private let fd: Int32
    private var buffer: [UInt8]
    private var used = 0

    init(path: String) throws {
        fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw EmulatorError.system(call: "open \(path)", errno: .last) }
        buffer = [UInt8](repeating: 0, count: 1 << 16)
        self.origin = 0
    }

    private var origin: UInt64

    func arrival(nowNs: UInt64, bytes: Int) { line(nowNs, UInt8(ascii: "+"), bytes, nil) }
    func departure(nowNs: UInt64, bytes: Int, delayNs: UInt64) { line(nowNs, UInt8(ascii: "-"), bytes, delayNs / 1_000_000) }
    func drop(nowNs: UInt64, bytes: Int) { line(nowNs, UInt8(ascii: "d"), bytes, nil) }

    private func line(_ nowNs: UInt64, _ kind: UInt8, _ bytes: Int, _ extra: UInt64?) {
        if origin == 0 { origin = nowNs }
        if used > buffer.count - 80 { flush() }
        append(UInt64((nowNs - origin) / 1_000_000))
        put(UInt8(ascii: " ")); put(kind); put(UInt8(ascii: " "))
        append(UInt64(bytes))
        if let extra { put(UInt8(ascii: " ")); append(extra) }
        put(UInt8(ascii: "\n"))
    }

    private func put(_ b: UInt8) {
        buffer[used] = b
        used += 1
    }

    private func append(_ value: UInt64) {
        var v = value
        var digits = 0
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &tmp) { t in
            repeat {
                t[digits] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                digits += 1
            } while v > 0
            for i in stride(from: digits - 1, through: 0, by: -1) { put(t[i]) }
        }
    }

    func flush() {
        guard used > 0 else { return }
        _ = buffer.withUnsafeBytes { write(fd, $0.baseAddress, used) }
        used = 0
    }

    func close() {
        flush()
        Glibc.close(fd)
    }
}
