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
    private(set) var appLatencies: [AppLatencySample] = []
    private(set) var irobBytes: [IROBBytes] = []
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
    private struct AppCapture: Hashable { var app: Int; var capture: Int }

    private struct AppInfo {
        var name: String
        var role: AppRole
        var variant: ToyVariant
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
        var bookedIDs: [Int: Set<UInt32>] = [:]
        for k in log.appBytesPerBin.keys { bookedIDs[k.connection, default: []].insert(k.appID) }
        for c in connections {
            let aIsClient = clientIsA[c.id]!.0
            let clientPort = aIsClient ? c.key.portA : c.key.portB
            let serverPort = aIsClient ? c.key.portB : c.key.portA
            if let m = meta?.apps.firstIndex(where: { ($0.serverPorts ?? []).contains(serverPort) || ($0.clientPorts ?? []).contains(clientPort) }) {
                appsOfConn[c.id] = [m]
                continue
            }
            let recs = recordsByConn[c.id] ?? []
            var counts: [UInt32: Int] = [:]
            for r in recs { counts[r.header.appID, default: 0] += 1 }
            var ids = counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map(\.key)
            // An app whose IntNW bytes crossed this connection without completing a message here
            // (an IROB split across a session's networks completes on the other one) is on it too.
            for id in bookedIDs[c.id, default: []].sorted() where counts[id] == nil && apps.contains(where: { $0.appId == id }) {
                ids.append(id)
            }
            guard !ids.isEmpty else { continue }
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
        let knownIDs = Set(apps.compactMap(\.appId))

        // IntNW decoding losses of one direction: the parser's own and bytes of IROBs whose app
        // was never learned.
        func decodingStats(_ c: TCPConnection, fromA: Bool) -> IntNWDecodingStats {
            var s = (fromA ? c.consumerA : c.consumerB)?.intnwDecodingStats ?? IntNWDecodingStats()
            s.unattributedBytes += log.unattributedBytes[MessageLog.DirectionKey(connection: c.id, fromA: fromA)] ?? 0
            return s
        }

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
                framingErrors: log.errorsByConnection[c.id] ?? 0, firstFramingError: log.firstErrorByConnection[c.id],
                intnwFramesUp: proto == .intnw ? ((aIsClient ? c.consumerA : c.consumerB)?.intnwFramesByType ?? [:]) : nil,
                intnwFramesDown: proto == .intnw ? ((aIsClient ? c.consumerB : c.consumerA)?.intnwFramesByType ?? [:]) : nil,
                intnwDecodingUp: proto == .intnw ? decodingStats(c, fromA: aIsClient) : nil,
                intnwDecodingDown: proto == .intnw ? decodingStats(c, fromA: !aIsClient) : nil))
            if proto == .intnw {
                let lost = [decodingStats(c, fromA: true), decodingStats(c, fromA: false)]
                let unattributed = lost.reduce(0) { $0 + $1.unattributedBytes }
                if unattributed > 0 {
                    warnings.append("connection \(clientEP) → \(serverEP) on \(captures[c.capture].interface): \(unattributed) IntNW bytes crossed the wire but could not be attributed to an app (frame headers cut by the snap length or lost in capture holes; decoding lost its framing \(lost.reduce(0) { $0 + $1.framingLost }) times and resumed \(lost.reduce(0) { $0 + $1.resynchronized }) times); per-app bytes are lower bounds")
                }
            }
            if up.gapBytes + down.gapBytes > 0 {
                warnings.append("connection \(clientEP) → \(serverEP) on \(captures[c.capture].interface): the capture missed \(up.gapBytes + down.gapBytes) bytes in \(up.gaps + down.gaps) holes")
            }
        }

        // 4. Apps: messages, latency, throughput (client-side captures only).
        let clientSide = Set(input.captures.indices.filter { input.captures[$0].side == .client })
        var appResults: [AppResult] = []
        var appSeries: [ThroughputSeries] = []
        var protocolOf: [Int: StreamProtocol] = [:]
        for r in connResults { protocolOf[r.id] = r.protocol }
        var appBytesByKey: [Int: [(key: MessageLog.AppBytesKey, bins: [UInt64])]] = [:]
        for (k, bins) in log.appBytesPerBin { appBytesByKey[k.connection, default: []].append((k, bins)) }
        // Apps' bytes per capture and direction, for the accounting invariant.
        var appBytesByCapture: [Int: ([UInt64], [UInt64])] = [:]
        // Each app's bytes per capture (uplink, downlink), for the capacity check.
        var appBinsByCapture: [AppCapture: ([UInt64], [UInt64])] = [:]
        // The server-side capture's view of each client-side connection (same addresses and ports).
        var serverTwin: [Int: Int] = [:]
        do {
            var serverByKey: [ConnectionKey: Int] = [:]
            for c in connections where !clientSide.contains(c.capture) { serverByKey[c.key] = c.id }
            for c in connections where clientSide.contains(c.capture) { if let t = serverByKey[c.key] { serverTwin[c.id] = t } }
        }
        // One window for every rate (apps, interfaces): the trial, from its first to its last
        // captured packet.
        let window = trialWindowSeconds
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
            var logCheck: AppLogCheck?
            var appLat: [UInt64] = []
            var appUnanswered: Int?
            var queued: [QueuedRequest]?
            if let file = app.logFile, let dir = runDirectory {
                let path = file.hasPrefix("/") ? file : (dir as NSString).appendingPathComponent(file)
                if let entries = AppLogReader.read(path: path, appID: app.appId) {
                    logCheck = AppLogReader.check(file: file, log: entries, wire: appSamples)
                    // Both latencies side by side, per request.
                    var wireBySeq: [UInt64: UInt64] = [:]
                    for i in appSamples.indices {
                        wireBySeq[appSamples[i].sequence] = appSamples[i].latencyNanoseconds
                        if let t = entries.fgTimes[appSamples[i].sequence] {
                            appSamples[i].appLatencyNanoseconds = t.receive - t.send
                        }
                    }
                    var mine: [AppLatencySample] = entries.fgTimes.map {
                        AppLatencySample(app: app.name, sequence: $0.key, sendNanoseconds: $0.value.send,
                                         receiveNanoseconds: $0.value.receive, wireLatencyNanoseconds: wireBySeq[$0.key])
                    }
                    mine += entries.unanswered.map {
                        AppLatencySample(app: app.name, sequence: $0.key, sendNanoseconds: $0.value, receiveNanoseconds: nil,
                                         wireLatencyNanoseconds: wireBySeq[$0.key])
                    }
                    mine.sort { ($0.sendNanoseconds, $0.sequence) < ($1.sendNanoseconds, $1.sequence) }
                    appLatencies += mine
                    appLat = mine.compactMap(\.latencyNanoseconds)
                    appUnanswered = entries.unanswered.count
                    queued = Self.clientQueued(mine)
                    if let q = queued, !q.isEmpty, let worst = q.max(by: { $0.differenceMs < $1.differenceMs }) {
                        warnings.append("app '\(app.name)': \(q.count) FG requests waited in the client before reaching the wire (app-perceived minus wire latency > max(10 ms, 10%)); the largest: request \(worst.sequence), \(String(format: "%.0f", worst.appMs)) ms felt vs \(String(format: "%.0f", worst.wireMs)) ms on the wire")
                    }
                    if appUnanswered! > 0 {
                        warnings.append("app '\(app.name)': \(appUnanswered!) FG requests were never answered (app log)")
                    }
                } else {
                    warnings.append("app '\(app.name)': log \(file) is missing or unreadable; no cross-check")
                }
            }
            latencies += appSamples
            if mismatches > 0 { warnings.append("app '\(app.name)': \(mismatches) IROBs labeled differently from the toy message kind they carry") }

            // Throughput: the bytes that crossed the wire for this app, booked when first captured
            // (docs/analysis.md, "Accounting"). IntNW connections: DATA payload bytes of the IROBs
            // whose toy header names this app; toy on plain TCP: the toy messages' bytes (by the
            // app id in their header when the connection is shared); anything else: the
            // connection's distinct stream bytes.
            var upBins: [UInt64] = [], downBins: [UInt64] = []
            var upBytes: UInt64 = 0, downBytes: UInt64 = 0
            var firstT = UInt64.max, lastT: UInt64 = 0
            func note(_ bins: [UInt64]) {
                if let f = bins.firstIndex(where: { $0 > 0 }), let l = bins.lastIndex(where: { $0 > 0 }) {
                    firstT = min(firstT, origin + UInt64(f) * binWidth)
                    lastT = max(lastT, origin + UInt64(l + 1) * binWidth)
                }
            }
            for c in conns {
                // Uplink bytes are booked where they have crossed the bottleneck: in the server-side
                // capture of the same connection when there is one (the client side sees them enter
                // the link's queue); downlink bytes in the client-side capture.
                let twin = serverTwin[c.id].flatMap { byID[$0] }
                let upConn = twin ?? c
                func book(_ conn: TCPConnection, uplink: Bool, _ bins: [UInt64], _ total: UInt64) {
                    var perCapture = appBytesByCapture[conn.capture] ?? ([], [])
                    var mine = appBinsByCapture[AppCapture(app: ai, capture: conn.capture)] ?? ([], [])
                    if uplink {
                        addBins(&upBins, bins); addBins(&perCapture.0, bins); addBins(&mine.0, bins); upBytes += total
                    } else {
                        addBins(&downBins, bins); addBins(&perCapture.1, bins); addBins(&mine.1, bins); downBytes += total
                    }
                    appBytesByCapture[conn.capture] = perCapture
                    appBinsByCapture[AppCapture(app: ai, capture: conn.capture)] = mine
                    note(bins)
                }
                if protocolOf[c.id] == .intnw || protocolOf[c.id] == .toy {
                    // A connection of this app alone: all its messages; a shared one: by app id.
                    // Bytes carrying another known app's id are never this app's.
                    let mine: (UInt32) -> Bool = { id in id == app.appId || (!isShared(c.id) && !knownIDs.contains(id)) }
                    for conn in Set([c.id, upConn.id]).sorted().compactMap({ byID[$0] }) {
                        for (key, bins) in appBytesByKey[conn.id] ?? [] where mine(key.appID) {
                            let up = isUplink(conn.id, fromA: key.fromA)
                            // Uplink from the connection seen past the bottleneck, downlink from the client side.
                            guard up ? conn.id == upConn.id : conn.id == c.id else { continue }
                            book(conn, uplink: up, bins, bins.reduce(0, +))
                        }
                    }
                } else {
                    let u = clientIsA[upConn.id]!.0 ? upConn.aToB : upConn.bToA
                    let d = clientIsA[c.id]!.0 ? c.bToA : c.aToB
                    book(upConn, uplink: true, u.uniqueBytesPerBin, u.stats.uniqueBytes)
                    book(c, uplink: false, d.uniqueBytesPerBin, d.stats.uniqueBytes)
                }
            }
            let active = firstT < lastT ? Double(lastT - firstT) / 1e9 : 0
            let rate = { (b: UInt64) in window > 0 ? Double(b) / window : 0 }
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
                                                          latencyMs: Statistics.latencySummary(nanoseconds: lat),
                                                          appLatencyMs: Statistics.latencySummary(nanoseconds: appLat),
                                                          appUnanswered: appUnanswered, clientQueued: queued) : nil,
                bg: !isFG || seqs[.bgChunk] != nil ? BGResult(chunks: seqs[.bgChunk]?.count ?? 0, completeChunks: completeChunks.count,
                                                              acks: seqs[.bgAck]?.count ?? 0, chunkPayloadBytes: chunkBytes) : nil,
                throughput: ThroughputResult(uplinkBytes: upBytes, downlinkBytes: downBytes, activeSeconds: active,
                                             windowSeconds: window,
                                             uplinkBytesPerSecond: rate(upBytes), downlinkBytesPerSecond: rate(downBytes),
                                             totalBytesPerSecond: rate(upBytes + downBytes)),
                logCheck: logCheck))
            _ = ai
        }
        latencies.sort { ($0.app, $0.requestNanoseconds) < ($1.app, $1.requestNanoseconds) }
        irobBytes = log.irobBytes.map { k, v in
            IROBBytes(connection: k.connection, uplink: isUplink(k.connection, fromA: k.fromA), irob: k.irob, bytes: v)
        }.sorted { ($0.connection, $0.uplink ? 0 : 1, $0.irob) < ($1.connection, $1.uplink ? 0 : 1, $1.irob) }

        // 5. Interfaces: every payload byte captured there, retransmissions included.
        var accountingViolations = 0
        func label(_ cap: CaptureResult) -> String { "\(cap.interface)" + (cap.side == "server" ? " (server)" : "") }
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
            let span = window
            ifaceResults.append(InterfaceResult(
                capture: cap.file, interface: cap.interface, side: cap.side, uplinkBytes: up, downlinkBytes: down,
                retransmittedBytes: retrans,
                meanUplinkBytesPerSecond: span > 0 ? Double(up) / span : 0,
                meanDownlinkBytesPerSecond: span > 0 ? Double(down) / span : 0, windowSeconds: window))
            if let apps = appBytesByCapture[ci] {
                let problems = Accounting.check(interface: label(cap), appsUplink: apps.0, appsDownlink: apps.1,
                                                uplink: upBins, downlink: downBins, binWidth: binWidth)
                accountingViolations += problems.count
                warnings += problems
            }
            let label = label(cap)
            ifaceSeries.append(ThroughputSeries(kind: .interface, name: label, direction: "uplink", binWidthNanoseconds: binWidth, bytesPerBin: upBins))
            ifaceSeries.append(ThroughputSeries(kind: .interface, name: label, direction: "downlink", binWidthNanoseconds: binWidth, bytesPerBin: downBins))
        }
        // Capacity: no app and no interface carries more past a link's bottleneck in a 1 s bin than
        // the trace let through (uplink counted at the server side, downlink at the client side).
        var capacityViolations: Int?
        if let cap = input.capacity {
            var problems: [String] = []
            let hasServer = captures.contains { $0.side == "server" }
            for (k, bins) in appBinsByCapture.sorted(by: { ($0.key.app, $0.key.capture) < ($1.key.app, $1.key.capture) }) {
                let iface = captures[k.capture].interface
                problems += cap.check(what: "app '\(apps[k.app].name)'", interface: iface, uplink: true, bins: bins.0, origin: origin, binWidth: binWidth)
                problems += cap.check(what: "app '\(apps[k.app].name)'", interface: iface, uplink: false, bins: bins.1, origin: origin, binWidth: binWidth)
            }
            for (ci, c) in captures.enumerated() {
                // The client side's uplink is what entered the link's queue; it is checked only when
                // no server-side capture shows what crossed it.
                let s = ifaceSeries.filter { $0.name == label(c) }
                if c.side == "server" || !hasServer, let up = s.first(where: { $0.direction == "uplink" }) {
                    problems += cap.check(what: "interface", interface: c.interface, uplink: true, bins: up.bytesPerBin, origin: origin, binWidth: binWidth)
                }
                if c.side != "server", let down = s.first(where: { $0.direction == "downlink" }) {
                    problems += cap.check(what: "interface", interface: c.interface, uplink: false, bins: down.bytesPerBin, origin: origin, binWidth: binWidth)
                }
                _ = ci
            }
            capacityViolations = problems.count
            warnings += problems
        }
        // Pad every series to the same length so CSV rows line up.
        let length = (appSeries + ifaceSeries).map(\.bytesPerBin.count).max() ?? 0
        series = (appSeries + ifaceSeries).map { s in
            var s = s
            s.bytesPerBin += [UInt64](repeating: 0, count: length - s.bytesPerBin.count)
            return s
        }

        // 6. Fairness: per role, over the window all apps of the role were active.
        var bgActive: [(first: Int, last: Int, bins: [UInt64])] = []
        for a in appResults where a.role == .bg {
            let up = appSeries.first { $0.name == a.name && $0.direction == "uplink" }?.bytesPerBin ?? []
            let down = appSeries.first { $0.name == a.name && $0.direction == "downlink" }?.bytesPerBin ?? []
            var both = [UInt64](repeating: 0, count: max(up.count, down.count))
            for (k, b) in up.enumerated() { both[k] += b }
            for (k, b) in down.enumerated() { both[k] += b }
            if let f = both.firstIndex(where: { $0 > 0 }), let l = both.lastIndex(where: { $0 > 0 }) { bgActive.append((f, l, both)) }
        }
        var bgJain: Double?, bgWindow: Double?
        if bgActive.count >= 2, let lo = bgActive.map(\.first).max(), let hi = bgActive.map(\.last).min(), lo <= hi {
            let seconds = Double(UInt64(hi - lo + 1) * binWidth) / 1e9
            bgJain = Statistics.jainIndex(bgActive.map { Double($0.bins[lo ... hi].reduce(0, +)) / seconds })
            bgWindow = seconds
        }
        var fgSamples: [[(t: UInt64, ns: UInt64)]] = []
        for a in appResults where a.role == .fg {
            let logged = appLatencies.filter { $0.app == a.name }.compactMap { s in s.latencyNanoseconds.map { (s.sendNanoseconds, $0) } }
            let wire = latencies.filter { $0.app == a.name }.map { ($0.requestNanoseconds, $0.latencyNanoseconds) }
            let xs = logged.isEmpty ? wire : logged
            if !xs.isEmpty { fgSamples.append(xs.map { (t: $0.0, ns: $0.1) }) }
        }
        var fgJain: Double?, fgWindow: Double?
        if fgSamples.count >= 2, let lo = fgSamples.compactMap({ $0.map(\.t).min() }).max(),
           let hi = fgSamples.compactMap({ $0.map(\.t).max() }).min(), lo <= hi {
            let means = fgSamples.map { xs -> Double? in
                let inside = xs.filter { $0.t >= lo && $0.t <= hi }.map { Double($0.ns) }
                return inside.isEmpty ? nil : inside.reduce(0, +) / Double(inside.count)
            }
            if means.allSatisfy({ $0 != nil }) {
                fgJain = Statistics.jainIndex(means.map { $0! })
                fgWindow = Double(hi - lo) / 1e9
            }
        }
        let fairness = FairnessResult(bgThroughputJain: bgJain, fgLatencyJain: fgJain, bgWindowSeconds: bgWindow, fgWindowSeconds: fgWindow)

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

        return TrialResult(name: input.name, variant: input.variant, originNanoseconds: origin, durationSeconds: 0, captures: captures,
                           connections: connResults, apps: appResults, interfaces: ifaceResults, fairness: fairness,
                           intnwConnections: intnwCount, toyConnections: toyCount,
                           accountingViolations: accountingViolations, capacityViolations: capacityViolations)
    }

    /// Requests whose app-perceived latency exceeds the wire's by more than max(10 ms, 10% of the
    /// app's): time spent queued in the client. (A wire latency above the app's by as much would be
    /// a measurement error and is listed too, with a negative difference.)
    static func clientQueued(_ samples: [AppLatencySample]) -> [QueuedRequest] {
        samples.compactMap { s in
            guard let a = s.latencyNanoseconds, let w = s.wireLatencyNanoseconds else { return nil }
            let appMs = Double(a) / 1e6, wireMs = Double(w) / 1e6
            let d = appMs - wireMs
            return abs(d) > max(10, 0.1 * appMs) ? QueuedRequest(sequence: s.sequence, appMs: appMs, wireMs: wireMs, differenceMs: d) : nil
        }
    }

    /// The trial's window for every rate: from its first to its last captured packet, seconds.
    var trialWindowSeconds: Double {
        let last = captureSpans.map(\.1).max() ?? origin
        return last > origin ? Double(last - origin) / 1e9 : 0
    }

    private func addBins(_ into: inout [UInt64], _ bins: [UInt64]) {
        if bins.count > into.count { into += [UInt64](repeating: 0, count: bins.count - into.count) }
        for (i, b) in bins.enumerated() { into[i] += b }
    }
}
