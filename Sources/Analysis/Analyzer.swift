import Capture
import Foundation
import ToyProtocol

/// Analyzer settings.
public struct AnalyzerOptions: Sendable {
    /// Width of the finest throughput bin, nanoseconds (coarser series are sums of these).
    public var binWidthNanoseconds: UInt64 = 100_000_000
    /// How to decode IntNW streams; nil treats them as opaque bytes.
    public var intnw: IntNWDecoding? = IntNWWireDecoding.standard
    /// Most time bins a trial may span (first to last packet of all its captures). Series are sized
    /// by the span, so a capture with a corrupt or hostile timestamp (1 s and 2^32 s in one file)
    /// is refused with a clear message instead of allocating terabytes. 1,000,000 bins is 27.8 h
    /// at the default 100 ms bin width, 11.6 days at 1 s.
    public var maxBins: UInt64 = 1_000_000

    public init() {}
}

/// One pcap of a trial.
public struct CaptureInput: Sendable, Equatable {
    public var path: String
    /// Interface name for reports (defaults to the file name without extension).
    public var interface: String
    public var side: RunMetadata.Side

    public init(path: String, interface: String? = nil, side: RunMetadata.Side = .client) {
        self.path = path
        self.interface = interface ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        self.side = side
    }
}

/// The captures of one trial and what the harness said about them.
public struct TrialInput: Sendable {
    public var name: String
    public var captures: [CaptureInput]
    public var metadata: RunMetadata?
    /// The run directory, when the trial came from one (app log paths are relative to it).
    public var directory: String?
    /// The experiment variant (layout, policy...) the trial ran; trials are aggregated per variant.
    public var variant: String?
    /// The links' scheduled capacity (from the run directory), for the capacity check.
    public var capacity: CapacitySchedule?

    public init(name: String, captures: [CaptureInput], metadata: RunMetadata? = nil, directory: String? = nil) {
        self.name = name
        self.captures = captures
        self.metadata = metadata
        self.directory = directory
    }

    /// A run directory: `apps.json` (optional) and its pcaps (listed there, or every `*.pcap`).
    public static func runDirectory(_ dir: String) throws(AnalysisError) -> TrialInput {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw .noInputs("run directory \(dir) does not exist")
        }
        let meta = try RunMetadata.load(runDirectory: dir)
        var captures: [CaptureInput] = []
        if let listed = meta?.captures {
            captures = listed.map {
                CaptureInput(path: ($0.file.hasPrefix("/") ? $0.file : (dir as NSString).appendingPathComponent($0.file)),
                             interface: $0.interface, side: $0.side ?? .client)
            }
        } else {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            captures = files.filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted()
                .map { CaptureInput(path: (dir as NSString).appendingPathComponent($0)) }
        }
        guard !captures.isEmpty else { throw .noInputs("no pcap files in run directory \(dir)") }
        var input = TrialInput(name: (dir as NSString).lastPathComponent, captures: captures, metadata: meta, directory: dir)
        input.capacity = CapacitySchedule.load(runDirectory: dir)
        return input
    }
}

/// One FG request/reply exchange measured from the wire, with the app's own view when its log
/// has the request.
public struct LatencySample: Sendable, Equatable {
    public var app: String
    public var sequence: UInt64
    /// First capture of the request's first byte, ns since the epoch.
    public var requestNanoseconds: UInt64
    /// When the reply's last byte was available at the client, ns since the epoch.
    public var replyNanoseconds: UInt64
    /// Wire latency.
    public var latencyNanoseconds: UInt64 { replyNanoseconds - requestNanoseconds }
    /// App-perceived latency (its log: submit to whole reply), when logged.
    public var appLatencyNanoseconds: UInt64?

    public init(app: String, sequence: UInt64, requestNanoseconds: UInt64, replyNanoseconds: UInt64,
                appLatencyNanoseconds: UInt64? = nil) {
        self.app = app
        self.sequence = sequence
        self.requestNanoseconds = requestNanoseconds
        self.replyNanoseconds = replyNanoseconds
        self.appLatencyNanoseconds = appLatencyNanoseconds
    }
}

/// DATA payload bytes of one IROB on one connection direction.
public struct IROBBytes: Sendable, Equatable {
    /// `ConnectionResult.id`.
    public var connection: Int
    /// Client → server.
    public var uplink: Bool
    public var irob: UInt64
    public var bytes: UInt64
}

/// One FG request as the app felt it (from its log): submitted at `sendNanoseconds`, whole reply
/// at `receiveNanoseconds` (nil: never answered). `wireLatencyNanoseconds` is the same request
/// measured on the wire, when the capture has it.
public struct AppLatencySample: Sendable, Equatable {
    public var app: String
    public var sequence: UInt64
    public var sendNanoseconds: UInt64
    public var receiveNanoseconds: UInt64?
    public var wireLatencyNanoseconds: UInt64?
    public var latencyNanoseconds: UInt64? { receiveNanoseconds.map { $0 - sendNanoseconds } }

    public init(app: String, sequence: UInt64, sendNanoseconds: UInt64, receiveNanoseconds: UInt64?, wireLatencyNanoseconds: UInt64?) {
        self.app = app
        self.sequence = sequence
        self.sendNanoseconds = sendNanoseconds
        self.receiveNanoseconds = receiveNanoseconds
        self.wireLatencyNanoseconds = wireLatencyNanoseconds
    }
}

/// Bytes per fixed-width time bin, bin 0 starting at the trial's origin.
public struct ThroughputSeries: Sendable, Equatable {
    public enum Kind: String, Sendable { case app, interface }
    public var kind: Kind
    public var name: String
    /// `uplink` (client→server) or `downlink`.
    public var direction: String
    public var binWidthNanoseconds: UInt64
    public var bytesPerBin: [UInt64]

    /// The same series in bins `factor` times wider.
    public func rebinned(by factor: Int) -> ThroughputSeries {
        var out = [UInt64](repeating: 0, count: (bytesPerBin.count + factor - 1) / factor)
        for (i, b) in bytesPerBin.enumerated() { out[i / factor] += b }
        return ThroughputSeries(kind: kind, name: name, direction: direction,
                                binWidthNanoseconds: binWidthNanoseconds * UInt64(factor), bytesPerBin: out)
    }

    /// (bin start in seconds, bytes per second) points.
    public var bytesPerSecondPoints: [(seconds: Double, bytesPerSecond: Double)] {
        let w = Double(binWidthNanoseconds) / 1e9
        return bytesPerBin.enumerated().map { (Double($0.offset) * w, Double($0.element) / w) }
    }
}

/// Everything measured for one trial: the JSON part plus what goes into CSVs and plots.
public struct TrialAnalysis: Sendable {
    public var result: TrialResult
    /// FG latencies on the wire (with the app's figure where logged).
    public var latencies: [LatencySample]
    /// IntNW DATA payload bytes per IROB and connection direction (for cross-checks with other decoders).
    public var irobBytes: [IROBBytes] = []
    /// FG requests as the apps logged them (answered or not), by app then submit time; empty for
    /// apps without a readable log.
    public var appLatencies: [AppLatencySample] = []
    public var series: [ThroughputSeries]
    public var warnings: [String]

    public init(result: TrialResult, latencies: [LatencySample], appLatencies: [AppLatencySample] = [],
                irobBytes: [IROBBytes] = [], series: [ThroughputSeries], warnings: [String]) {
        self.result = result
        self.latencies = latencies
        self.appLatencies = appLatencies
        self.irobBytes = irobBytes
        self.series = series
        self.warnings = warnings
    }
}

/// The experiments' view of the apps' own logs: what the analyzer decoded from them (experiments
/// never open the log files).
extension TrialAnalysis {
    /// App `name`'s log as the analyzer read it; nil when the metadata names no log for the app or
    /// the log could not be read.
    public func appLog(_ name: String) -> AppLogCheck? { result.apps.first { $0.name == name }?.logCheck }

    /// The FG requests app `name` logged (answered or not), by submit time.
    public func loggedRequests(app name: String) -> [AppLatencySample] { appLatencies.filter { $0.app == name } }
}

/// Turns captures into results. Single pass over each pcap; memory grows with the number of
/// connections, out-of-order data and messages, not with the number of packets.
public enum Analyzer {
    /// Analyzes several trials of the same configuration and aggregates them.
    public static func analyze(trials: [TrialInput], options: AnalyzerOptions = AnalyzerOptions()) throws(AnalysisError)
        -> (results: AnalysisResults, trials: [TrialAnalysis]) {
        guard !trials.isEmpty else { throw .noInputs("nothing to analyze") }
        var analyses: [TrialAnalysis] = []
        for t in trials { analyses.append(try analyze(t, options: options)) }
        var warnings: [String] = []
        for a in analyses {
            let prefix = analyses.count > 1 ? "\(a.result.name): " : ""
            warnings += a.warnings.map { prefix + $0 }
        }
        let results = AnalysisResults(trials: analyses.map(\.result), aggregate: aggregate(analyses.map(\.result)),
                                      warnings: warnings)
        return (results, analyses)
    }

    /// A packet too far after the trial's origin (see `AnalyzerOptions.maxBins`).
    private struct SpanTooLong: Error { let message: String }

    /// Analyzes one trial.
    public static func analyze(_ input: TrialInput, options: AnalyzerOptions = AnalyzerOptions()) throws(AnalysisError) -> TrialAnalysis {
        var warnings: [String] = []
        // Time 0 is the earliest packet of any capture, so all series share one axis.
        var origin = UInt64.max
        var readable: [Int: CaptureError] = [:]
        for (i, c) in input.captures.enumerated() {
            do {
                if let t = try PcapFileReader.firstTimestampNanoseconds(path: c.path) { origin = min(origin, t) }
            } catch {
                readable[i] = error
            }
        }
        if readable.count == input.captures.count {
            let reasons = input.captures.indices.map { readable[$0]!.description }
            throw .capture(reasons.count == 1 ? reasons[0] : "no readable capture: " + reasons.joined(separator: "; "))
        }
        if origin == .max { origin = 0 }

        let log = MessageLog(originNanoseconds: origin, binWidthNanoseconds: options.binWidthNanoseconds)
        let registry = IntNWSessionRegistry(log: log)
        var connections: [TCPConnection] = []
        var captureResults: [CaptureResult] = []
        var lastTime = origin
        var captureSpans: [(UInt64, UInt64)] = []
        var idCounter = 0
        let metadata = input.metadata

        for (ci, c) in input.captures.enumerated() {
            var cr = CaptureResult(file: (c.path as NSString).lastPathComponent, interface: c.interface, side: c.side.rawValue,
                                   linkType: nil, packets: 0, tcpPackets: 0, skippedNotIPv4: 0, skippedNotTCP: 0,
                                   skippedFragments: 0, skippedMalformed: 0, truncation: nil, error: nil)
            if let stats = CaptureStats.loadSidecar(forPcap: c.path) {
                cr.kernelReceived = stats.kernelReceived
                cr.kernelDropped = stats.kernelDropped
                cr.interfaceDropped = stats.interfaceDropped
                if stats.kernelDropped > 0 || stats.interfaceDropped > 0 {
                    warnings.append("\(cr.file): the kernel dropped \(stats.kernelDropped) packets (interface \(stats.interfaceDropped)) during capture; byte counts and latencies may miss data")
                }
            }
            if let e = readable[ci] {
                cr.error = e.description
                warnings.append(e.description)
                captureResults.append(cr)
                captureSpans.append((origin, origin))
                continue
            }
            let table = ConnectionTable(
                capture: ci, origin: origin, binWidth: options.binWidthNanoseconds,
                nextID: { defer { idCounter += 1 }; return idCounter },
                makeConsumers: { conn in
                    let forced = forcedProtocol(conn.key, metadata)
                    conn.consumerA = makeConsumer(conn, fromA: true, forced: forced, log: log, registry: registry, serverSide: c.side == .server, options: options)
                    conn.consumerB = makeConsumer(conn, fromA: false, forced: forced, log: log, registry: registry, serverSide: c.side == .server, options: options)
                    conn.aToB.consumer = conn.consumerA
                    conn.bToA.consumer = conn.consumerB
                })
            var first = UInt64.max, last: UInt64 = 0
            var packets = 0, tcp = 0, notIPv4 = 0, notTCP = 0, frag = 0, malformed = 0, unsupported = false
            var snapped = 0, snapLength = 0
            do {
                let reader = try PcapFileReader(path: c.path)
                let link = reader.linkType
                snapLength = reader.snapLength
                cr.linkType = link.description
                let maxSpan = options.maxBins.multipliedReportingOverflow(by: options.binWidthNanoseconds)
                let spanLimit = maxSpan.overflow ? UInt64.max : maxSpan.partialValue
                let summary = try reader.forEachPacket(allowTruncation: true) { p in
                    packets += 1
                    if p.capturedLength < p.originalLength { snapped += 1 }
                    let t = p.timestampNanoseconds
                    if t > origin, t - origin >= spanLimit {
                        throw SpanTooLong(message: "\(cr.file): packet \(p.index + 1) is \(Self.seconds(t - origin)) after the trial's first packet; "
                            + "at most \(options.maxBins) bins of \(options.binWidthNanoseconds / 1_000_000) ms (\(Self.seconds(spanLimit))) are analyzed "
                            + "-- corrupt timestamps? (a wider --bin-ms allows longer trials)")
                    }
                    if t < first { first = t }
                    if t > last { last = t }
                    switch PacketParser.parse(p.unsafeBytes, linkType: link) {
                    case .success(let seg):
                        tcp += 1
                        table.process(seg, packet: p.unsafeBytes, time: t)
                    case .failure(let reason):
                        switch reason {
                        case .notIPv4: notIPv4 += 1
                        case .notTCP: notTCP += 1
                        case .fragment: frag += 1
                        case .malformed: malformed += 1
                        case .unsupportedLinkType: unsupported = true; malformed += 1
                        }
                    }
                }
                if let tr = summary.truncation {
                    cr.truncation = tr
                    warnings.append("\(cr.file) is truncated after \(summary.packets) complete packets (\(tr)); analyzed those")
                }
                if unsupported { warnings.append("\(cr.file): link type \(link) is not supported (expected RAW, EN10MB, LINUX_SLL or LINUX_SLL2)") }
            } catch let e as SpanTooLong {
                throw .capture(e.message)
            } catch let e as CaptureError {
                cr.error = e.description
                warnings.append(e.description + "; analyzed the packets before it")
            } catch {
                cr.error = "\(error)"
                warnings.append("\(cr.file): \(error)")
            }
            table.finish(time: last == 0 ? origin : last)
            connections += table.connections
            cr.packets = packets
            cr.tcpPackets = tcp
            cr.skippedNotIPv4 = notIPv4
            cr.skippedNotTCP = notTCP
            cr.skippedFragments = frag
            cr.skippedMalformed = malformed
            if packets == 0 { warnings.append("\(cr.file) holds no packets") }
            if snapped > 0 {
                cr.snapLength = snapLength
                cr.snappedPackets = snapped
                warnings.append("\(cr.file): \(snapped) packets were cut by the capture's snap length (\(snapLength) bytes); the bytes cut off count as present at their packet's time, their contents unknown")
            }
            if malformed > 0 { warnings.append("\(cr.file): \(malformed) malformed packets skipped") }
            lastTime = max(lastTime, last)
            captureSpans.append(first <= last ? (first, last) : (origin, origin))
            captureResults.append(cr)
        }
        registry.finish()

        var builder = TrialBuilder(input: input, origin: origin, binWidth: options.binWidthNanoseconds,
                                   connections: connections, log: log, captures: captureResults, captureSpans: captureSpans)
        builder.runDirectory = input.directory
        let built = builder.build()
        warnings += builder.warnings
        if options.intnw == nil && metadata?.apps.contains(where: { $0.variant == .intnw }) == true {
            warnings.append("this build cannot decode IntNW frames; IntNW apps are measured as bytes only")
        }
        var result = built
        result.durationSeconds = Double(lastTime - origin) / 1e9
        result.variant = input.variant
        return TrialAnalysis(result: result, latencies: builder.latencies, appLatencies: builder.appLatencies,
                             irobBytes: builder.irobBytes, series: builder.series, warnings: warnings)
    }

    /// "12.5 s", for messages.
    static func seconds(_ ns: UInt64) -> String { String(format: "%.1f s", Double(ns) / 1e9) }

    static func forcedProtocol(_ key: ConnectionKey, _ meta: RunMetadata?) -> StreamProtocol? {
        guard let apps = meta?.apps else { return nil }
        for a in apps {
            let ports = (a.serverPorts ?? []) + (a.clientPorts ?? [])
            if ports.contains(key.portA) || ports.contains(key.portB) { return a.variant == .intnw ? .intnw : .toy }
        }
        return nil
    }

    static func makeConsumer(_ conn: TCPConnection, fromA: Bool, forced: StreamProtocol?, log: MessageLog,
                             registry: IntNWSessionRegistry, serverSide: Bool, options: AnalyzerOptions) -> DetectingConsumer {
        return DetectingConsumer(
            forced: forced, intnw: options.intnw,
            makeToy: { ToyStreamConsumer(log: log, connection: conn.id, fromA: fromA) },
            makeIntNW: { parser in
                IntNWStreamConsumer(parser: parser, registry: registry, log: log, connection: conn.id, fromA: fromA, serverSide: serverSide)
            })
    }

    /// Means and 95% confidence intervals across trials, per (experiment variant, app): trials of
    /// different variants are never pooled. Every aggregated quantity is non-negative, so its
    /// interval never reaches below zero (`Statistics.nonNegativeMeanWithCI`).
    static func aggregate(_ trials: [TrialResult]) -> AggregateResult {
        struct Key: Hashable { var variant: String?; var app: String }
        var order: [Key] = []
        var byKey: [Key: [AppResult]] = [:]
        for t in trials {
            for a in t.apps {
                let k = Key(variant: t.variant, app: a.name)
                if byKey[k] == nil { order.append(k) }
                byKey[k, default: []].append(a)
            }
        }
        let ci = Statistics.nonNegativeMeanWithCI
        let apps = order.map { key -> AggregateApp in
            let rs = byKey[key]!
            let lat = rs.compactMap { $0.fg?.latencyMs }
            return AggregateApp(
                name: key.app, experimentVariant: key.variant, role: rs[0].role, variant: rs[0].variant, trials: rs.count,
                fgLatencyMeanMs: ci(lat.map(\.meanMs)),
                fgLatencyP50Ms: ci(lat.map(\.p50Ms)),
                fgLatencyP95Ms: ci(lat.map(\.p95Ms)),
                fgLatencyP99Ms: ci(lat.map(\.p99Ms)),
                totalBytesPerSecond: ci(rs.map(\.throughput.totalBytesPerSecond)),
                uplinkBytesPerSecond: ci(rs.map(\.throughput.uplinkBytesPerSecond)),
                downlinkBytesPerSecond: ci(rs.map(\.throughput.downlinkBytesPerSecond)))
        }
        return AggregateResult(
            trials: trials.count, apps: apps,
            bgThroughputJain: ci(trials.compactMap(\.fairness.bgThroughputJain)),
            fgLatencyJain: ci(trials.compactMap(\.fairness.fgLatencyJain)))
    }
}
