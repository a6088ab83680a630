import Foundation
import ToyProtocol
@testable import ToyApps

/// Collects warnings the apps print.
final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var warn: @Sendable (String) -> Void { { [self] in add($0) } }
    func add(_ s: String) {
        lock.lock()
        stored.append(s)
        lock.unlock()
    }
    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// Parsed JSON log lines.
struct LogLines: @unchecked Sendable {
    let objects: [[String: Any]]

    init(_ lines: [String]) {
        objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func ofType(_ t: String, app: Int? = nil) -> [[String: Any]] {
        objects.filter { $0["type"] as? String == t && (app == nil || ($0["app"] as? Int) == app) }
    }
}

extension Dictionary where Key == String, Value == Any {
    func u64(_ k: String) -> UInt64? { (self[k] as? NSNumber)?.uint64Value }
    func int(_ k: String) -> Int? { (self[k] as? NSNumber)?.intValue }
    func double(_ k: String) -> Double? { (self[k] as? NSNumber)?.doubleValue }
}

/// Runs blocking app code on a thread of its own. The apps' blocking calls must never run on
/// Swift's cooperative pool: Swift Testing runs tests there, and with two cores two blocked tests
/// would starve the tasks the IntNW transport needs.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread {
            do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
        }.start()
    }
}

typealias LoopbackRun = (client: [AppSummary], server: ServerSummary, clientLog: LogLines, serverLog: LogLines,
                         failure: ToyAppError?, warnings: [String])

/// Runs a server and a client session over loopback for `seconds`, then stops both (on a thread
/// of its own, see `onThread`).
func runLoopback(transport: ToyTransport, connections: [[ClientApp]], seconds: Double,
                 replyBytes: Int = 64) async throws -> LoopbackRun {
    try await onThread { try runLoopbackBlocking(transport: transport, connections: connections, seconds: seconds, replyBytes: replyBytes) }
}

private func runLoopbackBlocking(transport: ToyTransport, connections: [[ClientApp]], seconds: Double,
                 replyBytes: Int) throws -> LoopbackRun {
    let warnings = WarningLog()
    let serverSink = MemoryLineSink(), clientSink = MemoryLineSink()
    let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0, replyBytes: replyBytes),
                           transport: transport, sink: serverSink, warn: warnings.warn)
    let port = try server.start()
    let session = ClientSession(
        configuration: ClientSessionConfiguration(host: "127.0.0.1", port: port, connections: connections,
                                                  connectTimeoutSeconds: 5, drainSeconds: 2),
        transport: transport, sink: clientSink, warn: warnings.warn)
    session.start(onFinished: {})
    Thread.sleep(forTimeInterval: seconds)
    session.reportProgress()
    let summaries = session.stop()
    let serverSummary = server.stop()
    return (summaries, serverSummary, LogLines(clientSink.lines), LogLines(serverSink.lines), session.failure, warnings.lines)
}
