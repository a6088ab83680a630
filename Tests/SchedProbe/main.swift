/// Test helper (not shipped): a second IntNW process for the multi-app scheduling tests.
///
///     intnw-sched-probe fg-hold --server IP --port P --interface NAME --address IP [--netns PATH] [--segment NAME]
///         sends one 128-byte foreground IROB, prints "enqueued", prints "acked" once the peer
///         acknowledged it, and exits when stdin closes.
///     intnw-sched-probe fg-loop --server IP --port P --interface NAME --address IP [--netns PATH]
///                               [--segment NAME] [--interval S] [--duration S] [--request-bytes N]
///                               [--interfaces wifi0,cell0]
///         sends a foreground request every interval and waits for the reply; prints
///         "latency_ms X" per request and "done" at the end.
///
/// Requests are independent IROBs (`dependsOn: .none`) so they never wait behind background ones.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IntNW

struct ProbeError: Error, CustomStringConvertible {
    var description: String
}

func parse(_ args: [String]) throws -> (mode: String, values: [String: String]) {
    guard let mode = args.first, ["fg-hold", "fg-loop"].contains(mode) else {
        throw ProbeError(description: "usage: intnw-sched-probe fg-hold|fg-loop --server IP --port P --interface NAME --address IP ...")
    }
    var values: [String: String] = [:]
    var i = 1
    while i < args.count {
        let k = args[i]
        guard k.hasPrefix("--"), i + 1 < args.count else { throw ProbeError(description: "bad argument '\(k)'") }
        values[String(k.dropFirst(2))] = args[i + 1]
        i += 2
    }
    for required in ["server", "port", "interface", "address"] where values[required] == nil {
        throw ProbeError(description: "missing --\(required)")
    }
    return (mode, values)
}

func say(_ s: String) {
    FileHandle.standardOutput.write((s + "\n").data(using: .utf8)!)
}

func run() async throws {
    let (mode, v) = try parse(Array(CommandLine.arguments.dropFirst()))
    guard let port = UInt16(v["port"]!), let address = IPv4Endpoint.parse(v["address"]!) else {
        throw ProbeError(description: "bad --port or --address")
    }
    var o = MultiSocketOptions(staticNetworks: [LocalNetwork(networkID: 1, kind: .cellular, interfaceName: v["interface"]!, address: address)],
                               connectTimeoutSeconds: 10)
    if let list = v["interfaces"] {
        // Watch these interfaces (wifi0 is WiFi, the rest cellular) instead of one static network.
        let names = list.split(separator: ",").map(String.init)
        o.staticNetworks = nil
        o.interfaces = names
        o.classifier = NetworkClassifier(explicit: Dictionary(uniqueKeysWithValues: names.map { ($0, $0.hasPrefix("wifi") ? NetworkKind.wifi : .cellular) }))
    }
    o.networkNamespacePath = v["netns"]
    if let seg = v["segment"] { o.sharedSchedulingSegment = seg == "per-namespace" ? .perNamespace : .named(seg) }
    let socket = try await MultiSocket.connect(to: v["server"]!, port: port, options: o)
    let size = Int(v["request-bytes"] ?? "128") ?? 128
    switch mode {
    case "fg-hold":
        _ = try await socket.send([UInt8](repeating: 7, count: size), labels: .foreground | .small, dependsOn: .none)
        say("enqueued")
        let watcher = Task {
            while socket.unacknowledgedCount > 0 { try await Task.sleep(for: .milliseconds(5)) }
            say("acked")
        }
        // Until the parent closes our stdin (or kills us).
        _ = await Task.detached { FileHandle.standardInput.readDataToEndOfFile() }.value
        watcher.cancel()
        await socket.close(timeoutSeconds: 0.2)
    default:
        let interval = Double(v["interval"] ?? "2") ?? 2
        let duration = Double(v["duration"] ?? "10") ?? 10
        let start = Date()
        var next = start
        while Date().timeIntervalSince(start) < duration {
            let wait = next.timeIntervalSinceNow
            if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
            if Date().timeIntervalSince(start) >= duration { break }
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try await socket.send([UInt8](repeating: 1, count: size), labels: .foreground | .small, dependsOn: .none)
            _ = try await socket.receive()
            say(String(format: "latency_ms %.3f", Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6))
            next = next.addingTimeInterval(interval)
            if next < Date() { next = Date() }
        }
        say("done")
        await socket.close(timeoutSeconds: 1)
    }
}

do {
    try await run()
} catch {
    FileHandle.standardError.write("intnw-sched-probe: \(error)\n".data(using: .utf8)!)
    exit(1)
}
