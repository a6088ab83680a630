import ToyProtocol
import ArgumentParser
import Logging
import ToyApps

extension ToyVariant: ExpressibleByArgument {}

/// Options every role has.
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Transport: 'intnw' (each toy message is one IROB on a multisocket) or 'plain' (one TCP connection, messages back to back).",
                               valueName: "intnw|plain"))
    var variant: ToyVariant

    @Option(help: ArgumentHelp("Server TCP port. Default: 5000 for plain, 5001 for intnw.", valueName: "port"))
    var port: UInt16?

    @Option(help: ArgumentHelp("Append JSON lines to this file instead of writing them to stdout.", valueName: "file"))
    var log: String?

    @Option(name: .customLong("start-delay"),
            help: ArgumentHelp("Seconds to wait before connecting or listening (fractions allowed).", valueName: "seconds"))
    var startDelaySeconds: Double = 0

    @Option(name: .customLong("duration"),
            help: ArgumentHelp("Seconds to run after the start delay; 0 runs until SIGINT/SIGTERM.", valueName: "seconds"))
    var durationSeconds: Double = 0

    @Option(name: .customLong("bg-policy"),
            help: ArgumentHelp("IntNW background policy: \(IntNWBackgroundPolicy.names.joined(separator: ", ")). Passed to the IntNW library (also as INTNW_BG_POLICY); default \(IntNWBackgroundPolicy.defaultName) (or INTNW_BG_POLICY when set); ignored by the plain variant.",
                               valueName: "name"))
    var bgPolicy: String?

    @Option(name: .customLong("log-level"),
            help: ArgumentHelp("Level of the IntNW library's diagnostics on stderr: trace, debug, info, notice, warning, error, critical.",
                               valueName: "level"))
    var logLevel: String = "notice"

    var resolvedPort: UInt16 { port ?? variant.defaultPort }

    var loggerLevel: Logger.Level { Logger.Level(rawValue: logLevel) ?? .notice }

    /// Rejects IntNW-only client options with the plain variant (they would silently do nothing).
    func checkIntNWOnly(_ client: ClientOptions) throws {
        guard variant == .plain else { return }
        if client.unlabeled { throw ValidationError("--unlabeled needs --variant intnw (plain TCP has no labels)") }
        if client.restrict != nil { throw ValidationError("--restrict needs --variant intnw (plain TCP follows the routing table)") }
    }

    func validate() throws {
        guard startDelaySeconds.isFinite, startDelaySeconds >= 0 else {
            throw ValidationError("--start-delay must be zero or a positive number of seconds")
        }
        guard durationSeconds.isFinite, durationSeconds >= 0 else {
            throw ValidationError("--duration must be zero (run until a signal) or a positive number of seconds")
        }
        if let p = bgPolicy, !IntNWBackgroundPolicy.names.contains(p) {
            throw ValidationError("--bg-policy '\(p)' is not one of \(IntNWBackgroundPolicy.names.joined(separator: ", "))")
        }
        if port == 0 { throw ValidationError("--port must be between 1 and 65535") }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }
}

/// Options of the client roles.
struct ClientOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Server address (IPv4 literal or host name).", valueName: "address"))
    var server = "198.19.0.1"

    @Option(name: .customLong("app-id"),
            help: ArgumentHelp("App id carried in every toy header (0-4294967295); the harness gives each app its own. Further apps in this process take the next ids.",
                               valueName: "id"))
    var appID: UInt32 = 1

    @Option(name: .customLong("connect-timeout"),
            help: ArgumentHelp("Seconds to keep trying to reach the server: refused, unreachable and timed-out connects are retried (plain TCP/MPTCP: each attempt on a new socket, at most 4 s, so a retry follows the routes of the moment); the harness passes the app's duration.", valueName: "seconds"))
    var connectTimeoutSeconds: Double = 10

    @Option(name: .customLong("drain"),
            help: ArgumentHelp("On shutdown, seconds to wait for replies and acks still in flight.", valueName: "seconds"))
    var drainSeconds: Double = 1

    @Flag(help: "IntNW only: send IROBs without FG/BG and size labels (an app that gives IntNW no hints). Answers are labelled like what they answer.")
    var unlabeled = false

    @Option(help: ArgumentHelp("IntNW only: network restriction label on every IROB: \(MessageLabeling.restrictionNames.keys.sorted().joined(separator: ", ")).",
                               valueName: "restriction"))
    var restrict: String?

    var labeling: MessageLabeling {
        MessageLabeling(labeled: !unlabeled, restriction: restrict.flatMap { MessageLabeling.restrictionNames[$0] } ?? .any)
    }

    func validate() throws {
        if let r = restrict, MessageLabeling.restrictionNames[r] == nil {
            throw ValidationError("--restrict '\(r)' is not one of \(MessageLabeling.restrictionNames.keys.sorted().joined(separator: ", "))")
        }
        guard connectTimeoutSeconds.isFinite, connectTimeoutSeconds > 0 else {
            throw ValidationError("--connect-timeout must be a positive number of seconds")
        }
        guard drainSeconds.isFinite, drainSeconds >= 0, drainSeconds <= 3600 else {
            throw ValidationError("--drain must be between 0 and 3600 seconds")
        }
    }
}

/// Options of FG clients.
struct FGOptions: ParsableArguments {
    @Option(name: .customLong("request-bytes"),
            help: ArgumentHelp("Size of each request in bytes, the 24-byte toy header included.", valueName: "bytes"))
    var requestBytes = 128

    @Option(name: .customLong("interval"),
            help: ArgumentHelp("Seconds between requests (fractions allowed). A request is sent only after the previous reply; a late reply makes the next request go out at once, skipping missed ticks.",
                               valueName: "seconds"))
    var intervalSeconds: Double = 1

    @Option(name: .customLong("grid-origin-ns"),
            help: ArgumentHelp("Tie the request grid to this CLOCK_MONOTONIC instant (nanoseconds): requests go at origin + k x interval, the first at the first such point after the app is ready. The testbed passes the trace replay's start, so FG apps of different trials meet the trace at the same phase. Default: the grid starts when the app is ready.",
                               valueName: "ns"))
    var gridOriginNs: UInt64?
}

/// Options of BG clients.
struct BGOptions: ParsableArguments {
    @Option(name: .customLong("chunk-bytes"),
            help: ArgumentHelp("Size of each bulk chunk in bytes, the 24-byte toy header included.", valueName: "bytes"))
    var chunkBytes = 262_144

    @Option(help: ArgumentHelp("Chunks in flight at most (a chunk is in flight until its ack arrives).", valueName: "chunks"))
    var depth = 4
}

/// Converts library validation into the parser's error (printed as one line plus usage).
func check(_ body: () throws(ToyAppError) -> Void) throws {
    do {
        try body()
    } catch {
        throw ValidationError(error.description)
    }
}

/// App ids `first`, `first + 1`, ... for `count` apps, or a validation error on overflow.
func appIDs(from first: UInt32, count: Int) throws -> [UInt32] {
    guard UInt64(first) + UInt64(count) - 1 <= UInt64(UInt32.max) else {
        throw ValidationError("--app-id \(first) leaves no room for \(count) apps (ids must stay below 4294967296)")
    }
    return (0 ..< count).map { first + UInt32($0) }
}
