import ArgumentParser
import Emulation
import Foundation

extension TraceStyle: ExpressibleByArgument {}
extension LinkKind: ExpressibleByArgument {}
extension VnperfImport.Carrier: ExpressibleByArgument {}

/// `intnw-lab trace ...`: check, summarise, generate and import link traces.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Validate, summarise, generate and import link traces.",
        discussion: """
            A trace is a text file with one slice per line, columns:
              start_s  wifi_down_Bps wifi_up_Bps wifi_rtt_ms
                       cell_down_Bps cell_up_Bps cell_rtt_ms  [wifi_loss cell_loss]
            Units: start times in seconds from the start of the trace; bandwidth in BYTES per second \
            (1250000 = 10 Mbit/s); round-trip time in milliseconds (split evenly between the \
            directions); loss as a fraction 0-1. A slice lasts until the next one starts; \
            '# duration: S' sets when the last one ends (default: one second after its start). WiFi is \
            out of range in a slice where either WiFi bandwidth is 0; cellular is always present. The \
            format, with '# links:' for more links, is specified in traces/README.md.
            """,
        subcommands: [Validate.self, Show.self, Generate.self, Import.self])

    /// Prints one line to standard error (after flushing standard output, so lines stay in order).
    static func complain(_ line: String) {
        fflush(nil)  // every output stream (stdout among them): the table is out before the message
        stderr(line)
    }

    /// Parses a trace file, or prints the one-line error and exits non-zero.
    static func load(_ path: String) throws -> Trace {
        do {
            return try TraceParser.parse(contentsOfFile: path)
        } catch {
            complain("\(error)")
            throw ExitCode.failure
        }
    }

    /// Writes `text` to `output`, or to standard output when `output` is nil.
    static func emit(_ text: String, output: String?, summary: String) throws {
        guard let output else {
            print(text, terminator: "")
            return
        }
        do {
            try TraceWriter.write(text: text, toFile: output)
        } catch {
            complain("\(error)")
            throw ExitCode.failure
        }
        complain("wrote \(output) (\(summary))")
    }

    static func summary(_ trace: Trace) -> String {
        "\(trace.slices.count) slice\(trace.slices.count == 1 ? "" : "s"), \(seconds(trace.durationSeconds)) s"
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}

extension TraceCommand {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check trace files; prints 'FILE: ok (N slices, D s)' or 'FILE:LINE: what is wrong'.",
            discussion: "Exits non-zero if any file is bad. Run 'intnw-lab trace --help' for the format and units.")

        @Argument(help: "Trace files to check.")
        var files: [String] = []

        func validate() throws {
            if files.isEmpty { throw ValidationError("give at least one trace file") }
        }

        func run() throws {
            var bad = 0
            for file in files {
                do {
                    let trace = try TraceParser.parse(contentsOfFile: file)
                    print("\(file): ok (\(TraceCommand.summary(trace)))")
                } catch {
                    TraceCommand.complain("\(error)")
                    bad += 1
                }
            }
            if bad > 0 { throw ExitCode.failure }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a trace's statistics.",
            discussion: """
                Duration, WiFi availability (% of time), WiFi encounter and disconnection lengths (count, \
                min/median/max seconds), and the 5th/50th/95th percentiles over time of each link's downlink \
                and uplink bandwidth (bytes/s) and RTT (ms). WiFi percentiles cover only the time WiFi is \
                available.
                """)

        @Argument(help: "The trace file.")
        var file: String

        func run() throws {
            let trace = try TraceCommand.load(file)
            print(TraceStats(trace: trace).render(name: file), terminator: "")
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a synthetic trace from a seeded model.",
            discussion: """
                Styles: annarbor and ypsilanti are vehicular (intermittent WiFi, always-on 3G; Ypsilanti has \
                sparser WiFi), cellular-only is the 3G model with no WiFi, constant is the lab trace (WiFi \
                1250000/625000 bytes/s, 20 ms; cellular 125000/62500 bytes/s, 100 ms). Slices are 1 s. The \
                same style, seed and duration give the same bytes on every machine. The model's parameters \
                are listed in traces/README.md.
                """)

        @Option(help: "Model of the trace.")
        var style: TraceStyle

        @Option(help: "Random seed (unsigned 64-bit integer).")
        var seed: UInt64 = 1

        @Option(help: "Length of the trace in seconds (at most 864000).")
        var duration: Double = 600

        @Option(help: "Write the trace to this file instead of standard output.")
        var output: String?

        func validate() throws {
            guard duration.isFinite, duration > 0, duration <= TraceGenerator.maxDurationSeconds else {
                throw ValidationError("--duration must be more than 0 and at most \(TraceCommand.seconds(TraceGenerator.maxDurationSeconds)) seconds")
            }
        }

        func run() throws {
            let trace: Trace
            do {
                trace = try TraceGenerator.generate(style: style, seed: seed, durationSeconds: duration)
            } catch {
                TraceCommand.complain("\(error)")
                throw ExitCode.failure
            }
            try TraceCommand.emit(TraceGenerator.text(of: trace, style: style), output: output,
                                  summary: TraceCommand.summary(trace))
        }
    }

    enum ImportFormat: String, CaseIterable, ExpressibleByArgument {
        case mahimahi
        case hsdpa
        case vnperf
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a public trace format to the canonical format.",
            discussion: """
                mahimahi: delivery-opportunity files (one integer millisecond timestamp per line, each a \
                chance to deliver one 1500-byte packet; the file is one direction). Give --uplink FILE and/or \
                --downlink FILE; a direction without a file needs a fixed rate (--uplink-Bps/--downlink-Bps). \
                Rates are binned into 1-second slices; a shorter file loops, as in Mahimahi.
                  intnw-lab trace import --format mahimahi --uplink up.trace --downlink down.trace --rtt-ms 60
                hsdpa: six-column Norway HSDPA / Ghent 4G logs ('unix_s mono_ms lat lon bytes ms': bytes \
                received in the ms interval). Each line becomes a slice of 'ms' milliseconds at bytes/ms*1000 \
                bytes/s downlink; the uplink is --up-fraction times that (the logs measure only the downlink).
                  intnw-lab trace import --format hsdpa bus-commute.log --rtt-ms 200
                vnperf: a drive CSV (header vehiclespeed,latitude,longitude,verizon,sprint,xfinitywifi; one                 row per second; RTTs in ms). Both links come from it: WiFi = xfinitywifi, cellular = --carrier                 (verizon or sprint). Outage rule, per second and link: -1 (no measurement) or an RTT of at                 least --queued-ms (default 1000 ms: a probe queued while out of reach and delivered late)                 makes the second unusable; WiFi is then out of range (0 B/s), cellular gets 0 B/s (the                 shaper's 1 kB/s floor) and its last usable RTT. Usable seconds keep the measured RTT. The CSV                 has no bandwidth: WiFi bandwidth is MODELLED as constant --wifi-down-Bps/--wifi-up-Bps                 (default 700000/350000 bytes/s) while usable; cellular capacity is MEASURED from Mahimahi                 files (--cellular-capacity UP,DOWN, looped from their start) or constant                 (--cellular-down-Bps/--cellular-up-Bps). The file header says which numbers are measured.
                  intnw-lab trace import --format vnperf drive.csv --cellular-capacity evdo.up,evdo.down
                The imported rates drive --link (default cellular; WiFi is then absent). With --link wifi, \
                the cellular link is constant (--cellular-down-Bps, --cellular-up-Bps, --cellular-rtt-ms). \
                Neither mahimahi nor hsdpa carries an RTT: --rtt-ms is required for them. Rates are rounded                 to whole bytes/s.
                """)

        @Option(help: "Input format.")
        var format: ImportFormat

        @Argument(help: "hsdpa: the log file; vnperf: the drive CSV.")
        var input: String?

        @Option(help: "mahimahi: uplink (client to server) delivery-opportunity file.")
        var uplink: String?

        @Option(help: "mahimahi: downlink (server to client) delivery-opportunity file.")
        var downlink: String?

        @Option(name: .customLong("uplink-Bps"), help: "mahimahi: fixed uplink rate in bytes/s when there is no --uplink file.")
        var uplinkBytesPerSecond: Double?

        @Option(name: .customLong("downlink-Bps"), help: "mahimahi: fixed downlink rate in bytes/s when there is no --downlink file.")
        var downlinkBytesPerSecond: Double?

        @Option(name: .customLong("up-fraction"), help: "hsdpa: uplink rate as a fraction of the downlink rate (default 1).")
        var upFraction: Double?

        @Option(help: "Link the imported rates drive.")
        var link: LinkKind = .cellular

        @Option(name: .customLong("rtt-ms"), help: "mahimahi/hsdpa: round-trip time of that link, milliseconds (required).")
        var rttMilliseconds: Double?

        @Option(help: "vnperf: the cellular carrier column.")
        var carrier: VnperfImport.Carrier = .verizon

        @Option(name: .customLong("queued-ms"), help: "vnperf: an RTT at or above this (ms) is a queued probe = an outage second.")
        var queuedMilliseconds: Double = VnperfImport.defaultQueuedMilliseconds

        @Option(name: .customLong("wifi-down-Bps"), help: "vnperf: modelled WiFi downlink while usable, bytes/s.")
        var wifiDownBytesPerSecond: Double = VnperfImport.defaultWiFiDown

        @Option(name: .customLong("wifi-up-Bps"), help: "vnperf: modelled WiFi uplink while usable, bytes/s.")
        var wifiUpBytesPerSecond: Double = VnperfImport.defaultWiFiUp

        @Option(name: .customLong("cellular-capacity"), help: "vnperf: Mahimahi files UP,DOWN giving the cellular capacity per second.")
        var cellularCapacity: String?

        @Option(name: .customLong("cellular-down-Bps"), help: "With --link wifi, or vnperf without --cellular-capacity: cellular downlink, bytes/s.")
        var cellularDownBytesPerSecond: Double = TraceGenerator.labCellular.downBytesPerSecond

        @Option(name: .customLong("cellular-up-Bps"), help: "With --link wifi, or vnperf without --cellular-capacity: cellular uplink, bytes/s.")
        var cellularUpBytesPerSecond: Double = TraceGenerator.labCellular.upBytesPerSecond

        @Option(name: .customLong("cellular-rtt-ms"), help: "With --link wifi: cellular RTT, milliseconds.")
        var cellularRTTMilliseconds: Double = TraceGenerator.labCellular.rttMilliseconds

        @Option(help: "Write the trace to this file instead of standard output.")
        var output: String?

        func validate() throws {
            func rate(_ value: Double?, _ name: String) throws {
                guard let value else { return }
                guard value.isFinite, value >= 0, value <= TraceLimits.maxBytesPerSecond else {
                    throw ValidationError("\(name) must be a rate from 0 to \(TraceCommand.seconds(TraceLimits.maxBytesPerSecond)) bytes/s")
                }
            }
            func rtt(_ value: Double, _ name: String) throws {
                guard value.isFinite, value >= 0, value <= TraceLimits.maxRTTMilliseconds else {
                    throw ValidationError("\(name) must be from 0 to \(TraceCommand.seconds(TraceLimits.maxRTTMilliseconds)) ms")
                }
            }
            if let rttMilliseconds { try rtt(rttMilliseconds, "--rtt-ms") }
            if format != .vnperf && rttMilliseconds == nil { throw ValidationError("\(format.rawValue) needs --rtt-ms (the format carries no RTT)") }
            try rtt(cellularRTTMilliseconds, "--cellular-rtt-ms")
            try rate(uplinkBytesPerSecond, "--uplink-Bps")
            try rate(downlinkBytesPerSecond, "--downlink-Bps")
            try rate(cellularDownBytesPerSecond, "--cellular-down-Bps")
            try rate(cellularUpBytesPerSecond, "--cellular-up-Bps")
            switch format {
            case .mahimahi:
                if input != nil { throw ValidationError("mahimahi takes --uplink FILE and/or --downlink FILE, not a positional file") }
                if upFraction != nil { throw ValidationError("--up-fraction is for hsdpa; for mahimahi give --uplink FILE or --uplink-Bps") }
                if uplink == nil && downlink == nil { throw ValidationError("mahimahi needs --uplink FILE and/or --downlink FILE") }
                if (uplink == nil) == (uplinkBytesPerSecond == nil) {
                    throw ValidationError("give exactly one of --uplink FILE and --uplink-Bps RATE")
                }
                if (downlink == nil) == (downlinkBytesPerSecond == nil) {
                    throw ValidationError("give exactly one of --downlink FILE and --downlink-Bps RATE")
                }
            case .vnperf:
                if input == nil { throw ValidationError("vnperf needs the drive CSV as an argument") }
                if rttMilliseconds != nil || uplink != nil || downlink != nil || uplinkBytesPerSecond != nil || downlinkBytesPerSecond != nil || upFraction != nil || link != .cellular {
                    throw ValidationError("vnperf takes the RTTs from the CSV: --rtt-ms/--uplink/--downlink/--uplink-Bps/--downlink-Bps/--up-fraction/--link do not apply")
                }
                if let c = cellularCapacity, c.split(separator: ",", omittingEmptySubsequences: false).count != 2 || c.hasPrefix(",") || c.hasSuffix(",") {
                    throw ValidationError("--cellular-capacity must be UP,DOWN (two Mahimahi files separated by a comma)")
                }
            case .hsdpa:
                if input == nil { throw ValidationError("hsdpa needs the log file as an argument") }
                if uplink != nil || downlink != nil || uplinkBytesPerSecond != nil || downlinkBytesPerSecond != nil {
                    throw ValidationError("--uplink/--downlink/--uplink-Bps/--downlink-Bps are for mahimahi")
                }
                if let f = upFraction, !(f.isFinite && f >= 0 && f <= 1000) {
                    throw ValidationError("--up-fraction must be from 0 to 1000")
                }
            }
        }

        func run() throws {
            let cellular = LinkConditions(downBytesPerSecond: cellularDownBytesPerSecond, upBytesPerSecond: cellularUpBytesPerSecond,
                                          rttMilliseconds: cellularRTTMilliseconds)
            if format == .vnperf {
                var o = VnperfImport.Options()
                o.carrier = carrier
                o.queuedMilliseconds = queuedMilliseconds
                o.wifiDownBytesPerSecond = wifiDownBytesPerSecond
                o.wifiUpBytesPerSecond = wifiUpBytesPerSecond
                o.cellularDownBytesPerSecond = cellularDownBytesPerSecond
                o.cellularUpBytesPerSecond = cellularUpBytesPerSecond
                if let c = cellularCapacity {
                    let parts = c.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                    o.cellularCapacity = (parts[0], parts[1])
                }
                let result: (trace: Trace, comments: [String])
                do {
                    result = try VnperfImport.trace(csv: input ?? "", options: o)
                } catch {
                    TraceCommand.complain("\(error)")
                    throw ExitCode.failure
                }
                try TraceCommand.emit(TraceWriter.text(of: result.trace, comments: result.comments), output: output,
                                      summary: TraceCommand.summary(result.trace))
                return
            }
            let rttMilliseconds = self.rttMilliseconds ?? 0
            let mapping = TraceImport.Mapping(link: link, rttMilliseconds: rttMilliseconds, otherCellular: cellular)
            let trace: Trace
            do {
                switch format {
                case .mahimahi:
                    func source(_ file: String?, _ rate: Double?) -> TraceImport.DirectionSource {
                        file.map { .file($0) } ?? .constant(bytesPerSecond: rate ?? 0)
                    }
                    trace = try TraceImport.mahimahi(uplink: source(uplink, uplinkBytesPerSecond),
                                                     downlink: source(downlink, downlinkBytesPerSecond), mapping: mapping)
                case .vnperf:
                    return
                case .hsdpa:
                    trace = try TraceImport.hsdpa(file: input ?? "", mapping: mapping, upFraction: upFraction ?? 1)
                }
            } catch {
                TraceCommand.complain("\(error)")
                throw ExitCode.failure
            }
            let text = TraceWriter.text(of: trace, comments: ["imported (\(format.rawValue)) from \(trace.source), mapped onto \(link.rawValue), RTT \(TraceCommand.seconds(rttMilliseconds)) ms"])
            try TraceCommand.emit(text, output: output, summary: TraceCommand.summary(trace))
        }
    }
}
