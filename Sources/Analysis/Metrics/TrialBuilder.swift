import Foundation
import ToyProtocol

/// Turns decoded connections and messages into per-connection, per-app and per-interface results.
struct TrialBuilder {
    let input: TrialInput
    let origin: UInt64
    let binWidth: UInt64
    let connections: [TCPConnection]
    let log: MessageLog
    let captures: [CaptureResult]
    let captureSpans: [(UInt64, UInt64)]
    private(set) var warnings: [String] = []
    private(set) var latencies: [LatencySample] = []
    private(set) var series: [ThroughputSeries] = []
    /// Where relative app log paths are resolved (the run directory), if known.
    var runDirectory: String?

    init(input: TrialInput, origin: UInt64, binWidth: UInt64, connections: [TCPConnection], log: MessageLog,
         captures: [CaptureResult], captureSpans: [(UInt64, UInt64)]) {
        self.input = input
        self.origin = origin
        self.binWidth = binWidth
        self.connections = connections
        self.log = log
        self.captures = captures
        self.captureSpans = captureSpans
    }

    private struct AppKey: Hashable { var name: String }

    private struct AppInfo {
        var name: String
        var role: AppRole
        var variant: AppVariant
        var appId: UInt32?
        var logFile: String?
        var connections: [Int] = []
    }

    mutating func build() -> TrialResult {
        let meta = input.metadata
        let byID = Dictionary(connections.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var recordsByConn: [Int: [MessageRecord]] = [:]
        for r in log.records { recordsByConn[r.connection, default: []].append(r) }

        // 1. Which side is the client.
        var clientIsA: [Int: (Bool, String)] = [:]
        for c in connections {
            if let s = c.clientIsA { clientIsA[c.id] = (s, "syn"); continue }
            if let apps = meta?.apps {
                if let a = apps.first(where: { ($0.serverPorts ?? []).contains(c.key.portB) }) { _ = a; clientIsA[c.id] = (true, "metadata"); continue }
                if let a = apps.first(where: { ($0.serverPorts ?? []).contains(c.key.portA) }) { _ = a; clientIsA[c.id] = (false, "metadata"); continue }
                if apps.contains(where: { ($0.clientPorts ?? []).contains(c.key.portA) }) { clientIsA[c.id] = (true, "metadata"); continue }
                if apps.contains(where: { ($0.clientPorts ?? []).contains(c.key.portB) }) { clientIsA[c.id] = (false, "metadata"); continue }
            }
            if let r = recordsByConn[c.id]?.first {
                clientIsA[c.id] = (r.header.kind.isFromClient == r.fromA, "messages")
                continue
            }
            // Ephemeral ports are the high ones.
            clientIsA[c.id] = (c.key.portA > c.key.portB, "port")
        }
        func isUplink(_ conn: Int, fromA: Bool) -> Bool { (clientIsA[conn]?.0 ?? true) == fromA }

        // 2. Which app owns each connection.
        var apps: [AppInfo] = meta?.apps.map { AppInfo(name: $0.name, role: $0.role, variant: $0.variant, appId: $0.appId, logFile: $0.logFile) } ?? []
        // A connection belongs to one app (port match, or the only app id in its messages) or is shared:
        // several apps on one multisocket. Messages on a shared connection go to the app in their header.
        var appsOfConn: [Int: [Int]] = [:]
        for c in connections {
            let aIsClient = clientIsA[c.id]!.0
            let clientPort = aIsClient ? c.key.portA : c.key.portB
            let serverPort = aIsClient ? c.key.portB : c.key.portA
            if let m = meta?.apps.firstIndex(where: { ($0.serverPorts ?? []).contains(serverPort) || ($0.clientPorts ?? []).contains(clientPort) }) {
                appsOfConn[c.id] = [m]
                continue
            }
            guard let recs = recordsByConn[c.id], !recs.isEmpty else { continue }
            var counts: [UInt32: Int] = [:]
            for r in recs { counts[r.header.appID, default: 0] += 1 }
            let ids = counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map(\.key)
            appsOfConn[c.id] = ids.map { id in
                if let m = apps.firstIndex(where: { $0.appId == id }) { return m }
                let mine = recs.filter { $0.header.appID == id }
                let fg = mine.contains { $0.header.kind.isForeground }
                let proto = c.consumerA?.detectedProtocol == .intnw || c.consumerB?.detectedProtocol == .intnw
                apps.append(AppInfo(name: "app\(id)", role: fg ? .fg : .bg, variant: proto ? .intnw : .plain, appId: id))
                return apps.count - 1
            }
        }
        for (cid, list) in appsOfConn { for a in list { apps[a].connections.append(cid) } }
        for i in apps.indices { apps[i].connections.sort() }
        func isShared(_ cid: Int) -> Bool { (appsOfConn[cid]?.count ?? 0) > 1 }

        // 3. Connection results.
        var connResults: [ConnectionResult] = []
        var toyCount = 0, intnwCount = 0
        for c in connections {
            let aIsClient = clientIsA[c.id]!.0
            let (up, down) = aIsClient ? (c.aToB.stats, c.bToA.stats) : (c.bToA.stats, c.aToB.stats)
            let protoA = c.consumerA?.detectedProtocol ?? .unknown, protoB = c.consumerB?.detectedProtocol ?? .unknown
            let proto: StreamProtocol = protoA == .intnw || protoB == .intnw ? .intnw : (protoA == .toy || protoB == .toy ? .toy : .unknown)
            if proto == .toy { toyCount += 1 }
            if proto == .intnw { intnwCount += 1 }
            let recs = recordsByConn[c.id] ?? []
            let ep = { (ip: UInt32, port: UInt16) in "\(ipv4String(ip)):\(port)" }
            let clientEP = aIsClient ? ep(c.key.ipA, c.key.portA) : ep(c.key.ipB, c.key.portB)
            let serverEP = aIsClient ? ep(c.key.ipB, c.key.portB) : ep(c.key.ipA, c.key.portA)
            connResults.append(ConnectionResult(
                id: c.id, capture: captures[c.capture].file, interface: captures[c.capture].interface,
                client: clientEP, server: serverEP, clientFrom: clientIsA[c.id]!.1,
                app: appsOfConn[c.id].map { $0.map { apps[$0].name }.joined(separator: "+") }, protocol: proto, uplink: up, downlink: down,
                messagesUp: recs.filter { isUplink(c.id, fromA: $0.fromA) }.count,
                messagesDown: recs.filter { !isUplink(c.id, fromA: $0.fromA) }.count,
                framingErrors: log.errorsByConnection[c.id] ?? 0, firstFramingError: log.firstErrorByConnection[c.id]))
            if up.gapBytes + down.gapBytes > 0 {
                warnings.append("connection \(clientEP) → \(serverEP) on \(captures[c.capture].interface): the capture missed \(up.gapBytes + down.gapBytes) bytes in \(up.gaps + down.gaps) holes")
            }
        }

        // 4. Apps: messages, latency, throughput (client-side captures only).
        let clientSide = Set(input.captures.indices.filter { input.captures[$0].side == .client })
        var appResults: [AppResult] = []
        var appSeries: [ThroughputSeries] = []
        for (ai, app) in apps.enumerated() {
            let conns = app.connections.compactMap { byID[$0] }.filter { clientSide.contains($0.capture) }
            if conns.isEmpty { warnings.append("app '\(app.name)': no connection matched it in the captures") }
            let recs = conns.flatMap { c in
                (recordsByConn[c.id] ?? []).filter { !isShared(c.id) || $0.header.appID == app.appId }
            }
            var reqStart: [UInt64: UInt64] = [:], repEnd: [UInt64: UInt64] = [:]
            var seqs: [ToyMessageKind: Set<UInt64>] = [:]
            var chunkBytes: UInt64 = 0, completeChunks = Set<UInt64>()
            var fgLabeled = 0, bgLabeled = 0, mismatches = 0
            for r in recs {
                let inserted = seqs[r.header.kind, default: []].insert(r.header.sequence).inserted
                switch r.header.kind {
                case .fgRequest:
                    reqStart[r.header.sequence] = min(reqStart[r.header.sequence] ?? .max, r.startNanoseconds)
                case .fgReply:
                    if let e = r.endNanoseconds { repEnd[r.header.sequence] = min(repEnd[r.header.sequence] ?? .max, e) }
                case .bgChunk:
                    if inserted { chunkBytes += UInt64(r.header.payloadLength) }
                    if r.endNanoseconds != nil { completeChunks.insert(r.header.sequence) }
                case .bgAck: break
                }
                if let fg = r.irobForeground {
                    if fg { fgLabeled += 1 } else { bgLabeled += 1 }
                    if fg != r.header.kind.isForeground { mismatches += 1 }
                }
            }
            var lat: [UInt64] = []
            var appSamples: [LatencySample] = []
            for (seq, start) in reqStart.sorted(by: { $0.key < $1.key }) {
                guard let end = repEnd[seq], end >= start else { continue }
                lat.append(end - start)
                appSamples.append(LatencySample(app: app.name, sequence: seq, requestNanoseconds: start, replyNanoseconds: end))
            }
            latencies += appSamples
            var logCheck: AppLogCheck?
            if let file = app.logFile, let dir = runDirectory {
                let path = file.hasPrefix("/") ? file : (dir as NSString).appendingPathComponent(file)
                logCheck = AppLogReader.check(file: file, path: path, appID: app.appId, wire: appSamples)
                if logCheck == nil { warnings.append("app '\(app.name)': log \(file) is missing or unreadable; no cross-check") }
                if let d = logCheck?.medianAbsDifferenceMs, d > 1 {
                    warnings.append("app '\(app.name)': wire latency differs from its own log by \(String(format: "%.2f", d)) ms (median)")
                }
            }
            if mismatches > 0 { warnings.append("app '\(app.name)': \(mismatches) IROBs labeled differently from the toy message kind they carry") }

            // Throughput from distinct payload bytes by first capture.
            var upBins: [UInt64] = [], downBins: [UInt64] = []
            var upBytes: UInt64 = 0, downBytes: UInt64 = 0
            var firstT = UInt64.max, lastT: UInt64 = 0
            for c in conns where isShared(c.id) {
                // Shared connection: count this app's own messages (header + payload) when they complete.
                for r in recordsByConn[c.id] ?? [] where r.header.appID == app.appId {
                    let t = r.endNanoseconds ?? r.startNanoseconds
                    guard t >= origin else { continue }
                    let bytes = UInt64(r.header.messageLength)
                    let bin = Int((t - origin) / binWidth)
                    let up = isUplink(c.id, fromA: r.fromA)
                    if up { upBytes += bytes } else { downBytes += bytes }
                    if up { addToBin(&upBins, bin, bytes) } else { addToBin(&downBins, bin, bytes) }
                    firstT = min(firstT, r.startNanoseconds)
                    lastT = max(lastT, t)
                }
            }
            for c in conns where !isShared(c.id) {
                let aIsClient = clientIsA[c.id]!.0
                let (up, down) = aIsClient ? (c.aToB, c.bToA) : (c.bToA, c.aToB)
                addBins(&upBins, up.uniqueBytesPerBin)
                addBins(&downBins, down.uniqueBytesPerBin)
                upBytes += up.stats.uniqueBytes
                downBytes += down.stats.uniqueBytes
                for s in [up.stats, down.stats] where s.firstPayloadNanoseconds > 0 {
                    firstT = min(firstT, s.firstPayloadNanoseconds)
                    lastT = max(lastT, s.lastPayloadNanoseconds)
                }
            }
            let active = firstT < lastT ? Double(lastT - firstT) / 1e9 : 0
            let rate = { (b: UInt64) in active > 0 ? Double(b) / active : 0 }
            appSeries.append(ThroughputSeries(kind: .app, name: app.name, direction: "uplink", binWidthNanoseconds: binWidth, bytesPerBin: upBins))
            appSeries.append(ThroughputSeries(kind: .app, name: app.name, direction: "downlink", binWidthNanoseconds: binWidth, bytesPerBin: downBins))

            var messages: [String: Int] = [:]
            for k in ToyMessageKind.allCases { messages[k.description] = seqs[k]?.count ?? 0 }
            let isFG = app.role == .fg
            appResults.append(AppResult(
                name: app.name, role: app.role, variant: app.variant, appId: app.appId,
                connections: app.connections, messages: messages, labelMismatches: mismatches,
                labeledForeground: fgLabeled, labeledBackground: bgLabeled,
                fg: isFG || !reqStart.isEmpty ? FGResult(requests: reqStart.count, replies: repEnd.count,
                                                          unanswered: reqStart.keys.filter { repEnd[$0] == nil }.count,
                                                          latencyMs: Statistics.latencySummary(nanoseconds: lat)) : nil,
                bg: !isFG || seqs[.bgChunk] != nil ? BGResult(chunks: seqs[.bgChunk]?.count ?? 0, completeChunks: completeChunks.count,
                                                              acks: seqs[.bgAck]?.count ?? 0, chunkPayloadBytes: chunkBytes) : nil,
                throughput: ThroughputResult(uplinkBytes: upBytes, downlinkBytes: downBytes, activeSeconds: active,
                                             uplinkBytesPerSecond: rate(upBytes), downlinkBytesPerSecond: rate(downBytes),
                                             totalBytesPerSecond: rate(upBytes + downBytes)),
                logCheck: logCheck))
            _ = ai
        }
        latencies.sort { ($0.app, $0.requestNanoseconds) < ($1.app, $1.requestNanoseconds) }

        // 5. Interfaces: every payload byte captured there, retransmissions included.
        var ifaceResults: [InterfaceResult] = []
        var ifaceSeries: [ThroughputSeries] = []
        for (ci, cap) in captures.enumerated() {
            var upBins: [UInt64] = [], downBins: [UInt64] = []
            var up: UInt64 = 0, down: UInt64 = 0, retrans: UInt64 = 0
            for c in connections where c.capture == ci {
                let aIsClient = clientIsA[c.id]!.0
                let (u, d) = aIsClient ? (c.aToB, c.bToA) : (c.bToA, c.aToB)
                addBins(&upBins, u.wireBytesPerBin)
                addBins(&downBins, d.wireBytesPerBin)
                up += u.stats.payloadBytes
                down += d.stats.payloadBytes
                retrans += u.stats.retransmittedBytes + d.stats.retransmittedBytes
            }
            let span = ci < captureSpans.count ? Double(captureSpans[ci].1 - captureSpans[ci].0) / 1e9 : 0
            ifaceResults.append(InterfaceResult(
                capture: cap.file, interface: cap.interface, side: cap.side, uplinkBytes: up, downlinkBytes: down,
                retransmittedBytes: retrans,
                meanUplinkBytesPerSecond: span > 0 ? Double(up) / span : 0,
                meanDownlinkBytesPerSecond: span > 0 ? Double(down) / span : 0))
            let label = "\(cap.interface)" + (cap.side == "server" ? " (server)" : "")
            ifaceSeries.append(ThroughputSeries(kind: .interface, name: label, direction: "uplink", binWidthNanoseconds: binWidth, bytesPerBin: upBins))
            ifaceSeries.append(ThroughputSeries(kind: .interface, name: label, direction: "downlink", binWidthNanoseconds: binWidth, bytesPerBin: downBins))
        }
        // Pad every series to the same length so CSV rows line up.
        let length = (appSeries + ifaceSeries).map(\.bytesPerBin.count).max() ?? 0
        series = (appSeries + ifaceSeries).map { s in
            var s = s
            s.bytesPerBin += [UInt64](repeating: 0, count: length - s.bytesPerBin.count)
            return s
        }

        // 6. Fairness.
        let bgRates = appResults.filter { $0.role == .bg }.map(\.throughput.totalBytesPerSecond)
        let allRates = appResults.map(\.throughput.totalBytesPerSecond)
        let fgLat = appResults.compactMap { $0.fg?.latencyMs?.meanMs }
        let fairness = FairnessResult(
            bgThroughputJain: bgRates.count >= 2 ? Statistics.jainIndex(bgRates) : nil,
            allAppsThroughputJain: allRates.count >= 2 ? Statistics.jainIndex(allRates) : nil,
            fgLatencyJain: fgLat.count >= 2 ? Statistics.jainIndex(fgLat) : nil)

        // 7. Say plainly what is missing.
        if connections.isEmpty {
            warnings.append("no TCP traffic in the captures")
        } else if intnwCount == 0 {
            let expected = meta?.apps.contains { $0.variant == .intnw } ?? false
            warnings.append((expected ? "no IntNW traffic found although the run lists IntNW apps" : "no IntNW traffic in the captures")
                + " (\(connections.count) TCP connections, \(toyCount) carrying plain-TCP toy messages)")
        }
        for (cid, n) in log.errorsByConnection.sorted(by: { $0.key < $1.key }) where n > 0 {
            warnings.append("connection \(cid): \(n) framing problems, first: \(log.firstErrorByConnection[cid] ?? "?")")
        }

        return TrialResult(name: input.name, originNanoseconds: origin, durationSeconds: 0, captures: captures,
                           connections: connResults, apps: appResults, interfaces: ifaceResults, fairness: fairness,
                           intnwConnections: intnwCount, toyConnections: toyCount)
    }

    private func addToBin(_ into: inout [UInt64], _ bin: Int, _ bytes: UInt64) {
        if bin >= into.count { into += [UInt64](repeating: 0, count: bin + 1 - into.count) }
        into[bin] += bytes
    }

    private func addBins(_ into: inout [UInt64], _ bins: [UInt64]) {
        if bins.count > into.count { into += [UInt64](repeating: 0, count: bins.count - into.count) }
        for (i, b) in bins.enumerated() { into[i] += b }
    }
}
