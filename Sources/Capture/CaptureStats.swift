import Foundation

/// What a live capture recorded, including the kernel's drop counters (`pcap_stats`). A capture
/// with drops is missing packets the analyzer cannot see, so results surface these numbers.
public struct CaptureStats: Codable, Sendable, Equatable {
    /// Interface captured on.
    public var interface: String
    /// Network namespace captured in (nil: the caller's own).
    public var namespace: String?
    /// The pcap file written.
    public var file: String
    /// Timestamp resolution actually used.
    public var timestampPrecision: TimestampPrecision
    /// Records written to the file.
    public var packetsWritten: Int
    /// Packets the kernel handed to the capture socket (`ps_recv`).
    public var kernelReceived: UInt64
    /// Packets dropped because the capture buffer was full (`ps_drop`).
    public var kernelDropped: UInt64
    /// Packets dropped by the interface or driver (`ps_ifdrop`).
    public var interfaceDropped: UInt64
    /// Wall-clock start and stop, nanoseconds since the Unix epoch.
    public var startedAtNanoseconds: UInt64
    public var stoppedAtNanoseconds: UInt64

    /// Where `LiveCapture` writes the stats of `pcapPath`: the same path plus `.stats.json`.
    public static func sidecarPath(forPcap pcapPath: String) -> String { pcapPath + ".stats.json" }

    /// Reads the sidecar of `pcapPath`, or nil when there is none (or it is unreadable).
    public static func loadSidecar(forPcap pcapPath: String) -> CaptureStats? {
        guard let data = FileManager.default.contents(atPath: sidecarPath(forPcap: pcapPath)) else { return nil }
        return try? JSONDecoder().decode(CaptureStats.self, from: data)
    }

    /// Writes the sidecar JSON next to the pcap.
    public func writeSidecar() throws(CaptureError) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = Self.sidecarPath(forPcap: file)
        do {
            try enc.encode(self).write(to: URL(fileURLWithPath: path))
        } catch {
            throw .writeFailed(path: path, detail: "\(error)")
        }
    }
}
