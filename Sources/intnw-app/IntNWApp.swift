import ArgumentParser
import ToyApps

/// `intnw-app`: the toy FG/BG apps of the testbed and their server, over IntNW or plain TCP.
@main
struct IntNWApp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intnw-app",
        abstract: "Toy foreground (interactive) and background (bulk) apps and their server, over IntNW or plain TCP.",
        discussion: """
            Every message is a toy-protocol message (24-byte header + filler payload). The plain variant \
            writes messages back to back on one TCP connection; the IntNW variant sends each message as one \
            IROB (requests labelled foreground+small, chunks background+large; replies and acks labelled like \
            what they answer). With INTNW_PLAIN_MPTCP=1 in the environment the plain variant's sockets             (client and server) are Linux Multipath TCP sockets (IPPROTO_MPTCP); subflows then follow the             kernel's path manager (`ip mptcp endpoint`).

            Units: sizes in bytes (whole messages, header included), times in seconds (fractions allowed). \
            Logs are JSON lines with CLOCK_REALTIME nanosecond timestamps (comparable with pcap times). \
            SIGINT/SIGTERM stop a role cleanly: a summary line goes to stderr and the exit status is 0. \
            Errors (bad arguments, connection refused, server gone) print one line and exit non-zero.
            """,
        subcommands: [FGClientCommand.self, BGClientCommand.self, FGBGClientCommand.self, ServerCommand.self])
}

private let logDiscussion = """
    Log lines (stdout or --log): {"type":"fg","app":N,"seq":N,"send_ns":T,"recv_ns":T,"latency_ms":X,\
    "variant":"...","request_bytes":N,"reply_bytes":N} per answered request; {"type":"bg_chunk","app":N,\
    "seq":N,"send_ns":T,"ack_ns":T,"bytes":N,"variant":"..."} per acked chunk; {"type":"bg_progress",...} \
    every second; {"type":"summary",...} per app at the end. send_ns is read just before the first byte \
    is handed to the socket or multisocket; recv_ns/ack_ns when the whole answer has arrived.
    """

/// `count` independent apps of one kind in this process (fg-client, bg-client), each on its own
/// multisocket (plain: TCP connection), with consecutive app ids from --app-id.
func independentApps(_ count: Int, common: CommonOptions, client: ClientOptions,
                     app: (UInt32) -> ClientApp) throws -> ClientSessionConfiguration {
    guard (1 ... 256).contains(count) else { throw ValidationError("--multisockets must be between 1 and 256") }
    let ids = try appIDs(from: client.appID, count: count)
    let c = ClientSessionConfiguration(host: client.server, port: common.resolvedPort, connections: ids.map { [app($0)] },
                                       connectTimeoutSeconds: client.connectTimeoutSeconds, drainSeconds: client.drainSeconds)
    try check { () throws(ToyAppError) in try c.validate() }
    return c
}

/// fg-client and bg-client: `--multisockets` independent apps of one role; they differ only in the
/// role's options, which `app(_:)` turns into an app's settings.
protocol SingleRoleClientCommand: ParsableCommand {
    /// The role's name in messages (the subcommand's name).
    static var role: String { get }
    var common: CommonOptions { get }
    var client: ClientOptions { get }
    var multisockets: Int { get }
    /// The app with id `appID`.
    func app(_ appID: UInt32) -> ClientApp
}

extension SingleRoleClientCommand {
    func sessionConfiguration() throws -> ClientSessionConfiguration {
        try independentApps(multisockets, common: common, client: client, app: app)
    }

    func validate() throws {
        try common.checkIntNWOnly(client)
        _ = try sessionConfiguration()
    }

    func run() throws {
        AppProcess.prepare(common)
        try AppProcess.runClients(role: Self.role, common: common, labeling: client.labeling, configuration: sessionConfiguration())
    }
}

struct FGClientCommand: SingleRoleClientCommand {
    static let configuration = CommandConfiguration(
        commandName: "fg-client",
        abstract: "Foreground app: a small request every --interval seconds, each after the previous reply.",
        discussion: logDiscussion)
    static let role = "fg-client"

    @OptionGroup var common: CommonOptions
    @OptionGroup var client: ClientOptions
    @OptionGroup var fg: FGOptions
    @Option(help: ArgumentHelp("Independent FG apps in this process, each on its own multisocket (plain: TCP connection), with consecutive app ids from --app-id.",
                               valueName: "count"))
    var multisockets = 1

    func app(_ appID: UInt32) -> ClientApp {
        .fg(FGClientSettings(appID: appID, requestBytes: fg.requestBytes, intervalSeconds: fg.intervalSeconds,
                             gridOriginNs: fg.gridOriginNs))
    }
}

struct BGClientCommand: SingleRoleClientCommand {
    static let configuration = CommandConfiguration(
        commandName: "bg-client",
        abstract: "Background app: bulk chunks back to back, at most --depth unacknowledged.",
        discussion: logDiscussion)
    static let role = "bg-client"

    @OptionGroup var common: CommonOptions
    @OptionGroup var client: ClientOptions
    @OptionGroup var bg: BGOptions
    @Option(help: ArgumentHelp("Independent BG apps in this process, each on its own multisocket (plain: TCP connection), with consecutive app ids from --app-id.",
                               valueName: "count"))
    var multisockets = 1

    func app(_ appID: UInt32) -> ClientApp {
        .bg(BGClientSettings(appID: appID, chunkBytes: bg.chunkBytes, depth: bg.depth))
    }
}

struct FGBGClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fg-bg-client",
        abstract: "An FG app and a BG app in one process, on two multisockets or sharing one.",
        discussion: "The FG app has id --app-id, the BG app --bg-app-id (default: --app-id + 1). " + logDiscussion)

    @OptionGroup var common: CommonOptions
    @OptionGroup var client: ClientOptions
    @OptionGroup var fg: FGOptions
    @OptionGroup var bg: BGOptions
    @Option(name: .customLong("bg-app-id"), help: ArgumentHelp("App id of the BG app (default: --app-id + 1).", valueName: "id"))
    var bgAppID: UInt32?
    @Option(help: ArgumentHelp("2: the FG and BG apps each have their own multisocket (plain: TCP connection); 1: they share one.",
                               valueName: "1|2"))
    var multisockets: Int?
    @Flag(name: .customLong("share-multisocket"), help: "Same as --multisockets 1.")
    var shareMultisocket = false
    @Option(name: .customLong("fg-start-delay"),
            help: ArgumentHelp("Seconds after --start-delay before the FG app starts (fractions allowed).", valueName: "seconds"))
    var fgStartDelaySeconds: Double = 0
    @Option(name: .customLong("bg-start-delay"),
            help: ArgumentHelp("Seconds after --start-delay before the BG app starts (fractions allowed).", valueName: "seconds"))
    var bgStartDelaySeconds: Double = 0

    func sessionConfiguration() throws -> ClientSessionConfiguration {
        if shareMultisocket, let m = multisockets, m != 1 {
            throw ValidationError("--share-multisocket contradicts --multisockets \(m)")
        }
        let count = shareMultisocket ? 1 : (multisockets ?? 2)
        guard count == 1 || count == 2 else { throw ValidationError("--multisockets must be 1 (shared) or 2 for fg-bg-client") }
        let bgID: UInt32
        if let b = bgAppID {
            bgID = b
        } else {
            bgID = try appIDs(from: client.appID, count: 2)[1]
        }
        for (name, v) in [("--fg-start-delay", fgStartDelaySeconds), ("--bg-start-delay", bgStartDelaySeconds)] where !(v.isFinite && v >= 0) {
            throw ValidationError("\(name) must be zero or a positive number of seconds")
        }
        let fgApp = ClientApp.fg(FGClientSettings(appID: client.appID, requestBytes: fg.requestBytes, intervalSeconds: fg.intervalSeconds,
                                                  startDelaySeconds: fgStartDelaySeconds, gridOriginNs: fg.gridOriginNs))
        let bgApp = ClientApp.bg(BGClientSettings(appID: bgID, chunkBytes: bg.chunkBytes, depth: bg.depth,
                                                  startDelaySeconds: bgStartDelaySeconds))
        let c = ClientSessionConfiguration(
            host: client.server, port: common.resolvedPort,
            connections: count == 1 ? [[fgApp, bgApp]] : [[fgApp], [bgApp]],
            connectTimeoutSeconds: client.connectTimeoutSeconds, drainSeconds: client.drainSeconds)
        try check { () throws(ToyAppError) in try c.validate() }
        return c
    }

    func validate() throws {
        try common.checkIntNWOnly(client)
        _ = try sessionConfiguration()
    }

    func run() throws {
        AppProcess.prepare(common)
        try AppProcess.runClients(role: "fg-bg-client", common: common, labeling: client.labeling, configuration: sessionConfiguration())
    }
}

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Server for both apps: answers each FG request with a reply and acknowledges each BG chunk.",
        discussion: "Replies are --reply-bytes long; acks are --ack-bytes long (a bare 24-byte header by default; a BG client sending header-only chunks with large acks downloads BG). Logs one JSON line per connection opened and closed, and a summary.")

    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("IPv4 address to listen on.", valueName: "address"))
    var address = "0.0.0.0"
    @Option(name: .customLong("reply-bytes"),
            help: ArgumentHelp("Size of each FG reply in bytes, the 24-byte toy header included.", valueName: "bytes"))
    var replyBytes = 64
    @Option(name: .customLong("ack-bytes"),
            help: ArgumentHelp("Size of each BG ack in bytes, the 24-byte toy header included (larger: BG downloads).", valueName: "bytes"))
    var ackBytes = 24
    @Option(name: .customLong("max-connections"),
            help: ArgumentHelp("Connections (multisockets) served at once, one thread each; more are closed at once and counted as refused.", valueName: "n"))
    var maxConnections = ServerSettings.defaultMaxConnections
    @Option(name: .customLong("idle-timeout"),
            help: ArgumentHelp("Plain TCP: close a connection that sends nothing for this many seconds (IntNW connections: the library's 60 s idle timeout, kept alive by client PINGs).", valueName: "seconds"))
    var idleTimeout = ServerSettings.defaultIdleTimeoutSeconds

    var settings: ServerSettings {
        ServerSettings(address: address, port: common.resolvedPort, replyBytes: replyBytes, ackBytes: ackBytes,
                       maxConnections: maxConnections, idleTimeoutSeconds: idleTimeout)
    }

    func validate() throws {
        try check { () throws(ToyAppError) in try settings.validate() }
    }

    func run() throws {
        AppProcess.prepare(common)
        try AppProcess.runServer(common: common, settings: settings)
    }
}
