#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IntNW
import Logging
import ToyApps
import ToyProtocol

/// The process life cycle shared by all roles: signals, start delay, duration, progress ticks,
/// orderly shutdown, summary line, exit status.
enum AppProcess {
    /// Why the main loop ended.
    enum StopReason: Equatable {
        case signal(Int32)
        case duration
        case finished
    }

    static func printError(_ line: String) {
        // write(2) on descriptor 2: no shared `stderr` FILE needed (and no data race on it).
        let text = "intnw-app: \(line)\n"
        _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }

    static func openSink(_ path: String?) throws -> LineSink {
        guard let path else { return FileLineSink.standardOutput() }
        do {
            return try FileLineSink(path: path)
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    /// Process set-up every role does first, before any thread exists: signals, the BG policy for
    /// the IntNW library, and library diagnostics on stderr (stdout may carry the JSON log).
    static func prepare(_ common: CommonOptions) {
        Signals.prepare()
        IntNWBackgroundPolicy.export(common.bgPolicy)
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    }

    static func transport(_ common: CommonOptions, labeling: MessageLabeling = MessageLabeling()) -> ToyTransport {
        switch common.variant {
        case .plain:
            return PlainTCPTransport()
        case .intnw:
            var logger = Logger(label: "intnw")
            logger.logLevel = common.loggerLevel
            let options = MultiSocketOptions(logger: logger)
            return IntNWTransport(backgroundPolicy: common.bgPolicy, labeling: labeling, options: options,
                                  listenerOptions: ListenerOptions(session: options))
        }
    }

    /// Waits for signals until `deadlineNs` (monotonic; nil: none), calling `tick` once a second
    /// and asking `isDone` whenever a worker wakes the main thread.
    static func mainLoop(deadlineNs: UInt64?, tick: () -> Void = {}, isDone: () -> Bool = { false }) -> StopReason {
        var nextTick = AppClock.monotonicNs() + 1_000_000_000
        while true {
            let now = AppClock.monotonicNs()
            if let d = deadlineNs, now >= d { return .duration }
            if now >= nextTick {
                tick()
                nextTick += 1_000_000_000
                if nextTick <= now { nextTick = now + 1_000_000_000 }
            }
            var until = nextTick
            if let d = deadlineNs { until = min(until, d) }
            switch Signals.wait(timeoutNs: until > now ? until - now : 0) {
            case .shutdown(let sig): return .signal(sig)
            case .wake: if isDone() { return .finished }
            case .timeout: if isDone() { return .finished }
            }
        }
    }

    static func describe(_ reason: StopReason, elapsedNs: UInt64) -> String {
        let secs = JSONLine.fixed(Double(elapsedNs) / 1e9, decimals: 1)
        switch reason {
        case .signal(let s): return "stopped by \(Signals.name(s)) after \(secs) s"
        case .duration: return "ran for \(secs) s"
        case .finished: return "ended after \(secs) s"
        }
    }

    /// The start delay. Returns the signal if one arrived during it.
    static func startDelay(_ seconds: Double) -> Int32? {
        guard seconds > 0 else { return nil }
        if case .signal(let s) = mainLoop(deadlineNs: AppClock.monotonicNs() + AppClock.nanoseconds(seconds: seconds)) {
            return s
        }
        return nil
    }

    /// Runs client apps until the duration ends, a signal arrives, or they all fail.
    static func runClients(role: String, common: CommonOptions, labeling: MessageLabeling,
                           configuration: ClientSessionConfiguration) throws {
        let sink = try openSink(common.log)
        if let s = startDelay(common.startDelaySeconds) {
            printError("\(role) (\(common.variant)): stopped by \(Signals.name(s)) during the start delay; nothing was sent")
            return
        }
        let started = AppClock.monotonicNs()
        let deadline = common.durationSeconds > 0 ? started + AppClock.nanoseconds(seconds: common.durationSeconds) : nil
        let session = ClientSession(configuration: configuration, transport: transport(common, labeling: labeling), sink: sink,
                                    warn: { printError("warning: \($0)") })
        session.start(onFinished: { Signals.wakeMain() })
        let reason = mainLoop(deadlineNs: deadline, tick: { session.reportProgress() }, isDone: { session.isFinished })
        let elapsed = AppClock.monotonicNs() - started
        let summaries = session.stop()
        for s in summaries { sink.write(line: s.jsonLine) }
        var failure = session.failure
        if failure == nil, reason == .duration, session.startedApps == 0 {
            failure = .connectFailed(endpoint: "\(configuration.host):\(configuration.port)",
                                     reason: "not connected when the \(JSONLine.fixed(common.durationSeconds, decimals: 1)) s duration ended")
        }
        if let failure { printError("error: \(failure)") }
        let apps = summaries.isEmpty ? "no app ran" : summaries.map(\.text).joined(separator: "; ")
        printError("summary: \(role) (\(common.variant)) \(describe(reason, elapsedNs: elapsed)); \(apps)")
        if failure != nil { throw ExitCode.failure }
    }

    /// Runs a server until the duration ends or a signal arrives.
    static func runServer(common: CommonOptions, settings: ServerSettings) throws {
        let sink = try openSink(common.log)
        if let s = startDelay(common.startDelaySeconds) {
            printError("server (\(common.variant)): stopped by \(Signals.name(s)) during the start delay")
            return
        }
        let server = ToyServer(settings: settings, transport: transport(common), sink: sink,
                               warn: { printError("warning: \($0)") })
        let port: UInt16
        do {
            port = try server.start()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        printError("server (\(common.variant)) listening on \(settings.address):\(port)")
        let started = AppClock.monotonicNs()
        let deadline = common.durationSeconds > 0 ? started + AppClock.nanoseconds(seconds: common.durationSeconds) : nil
        let reason = mainLoop(deadlineNs: deadline)
        let elapsed = AppClock.monotonicNs() - started
        let summary = server.stop()
        sink.write(line: summary.jsonLine)
        printError("summary: server (\(common.variant)) \(describe(reason, elapsedNs: elapsed)); \(summary.text)")
    }
}
