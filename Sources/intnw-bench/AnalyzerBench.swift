import Analysis
import Foundation
#if canImport(Glibc)
import Glibc
import LinuxSupport
import SyntheticTraffic
import SystemPackage
#endif

/// Analyzer speed and memory on a synthetic capture of at least a million packets, against
/// `tshark -q -z conv,tcp` on the same file in the same run.
///
/// Environment: INTNW_BENCH_PACKETS (default 1,000,000) sets the capture size; INTNW_BENCH_DIR
/// keeps the capture there instead of a temporary directory that is removed afterwards.
/// Returns printable lines.
func runAnalyzerBench() throws -> [String] {
    let env = ProcessInfo.processInfo.environment
    let target = Int(env["INTNW_BENCH_PACKETS"] ?? "") ?? 1_000_000
    let keep = env["INTNW_BENCH_DIR"]
    let dir = keep ?? (NSTemporaryDirectory() + "intnw-analyzer-bench-\(getpid())")
    defer { if keep == nil { try? FileManager.default.removeItem(atPath: dir) } }
    var lines: [String] = []

    // Two BG apps at 8 MB/s each (data + every-other-segment ACKs ≈ 16.6k packets/s) and two FG apps.
    var spec = SyntheticRunSpec()
    spec.fgApps = 2
    spec.bgApps = 2
    spec.bgBytesPerSecond = 8_000_000
    spec.singleCapture = true
    spec.mixIntNW = true  // one FG and one BG app speak IntNW, the others plain TCP
    spec.durationSeconds = Double(target) / 16_500 + 1
    let run = dir + "/run"
    let pcap = run + "/all.pcap"
    var t = Date()
    var packets = try SyntheticRun.write(spec, to: run)
    while packets < target {
        spec.durationSeconds *= Double(target) / Double(packets) * 1.02
        packets = try SyntheticRun.write(spec, to: run)
    }
    let size = (try? FileManager.default.attributesOfItem(atPath: pcap)[.size] as? Int) ?? 0
    lines.append(String(format: "analyzer: synthesized %d packets (%.0f MB, %d flows: FG+BG, plain TCP and IntNW) in %.1f s",
                        packets, Double(size) / 1e6, spec.fgApps + spec.bgApps, Date().timeIntervalSince(t)))

    // In-process: the analysis itself (no report files).
    t = Date()
    let (results, _) = try Analyzer.analyze(trials: [try TrialInput.runDirectory(run)])
    let inProcess = Date().timeIntervalSince(t)
    let apps = results.trials[0].apps
    lines.append(String(format: "analyzer: in-process analysis %.2f s (%.0f packets/s), %d apps, %d connections",
                        inProcess, Double(packets) / inProcess, apps.count, results.trials[0].connections.count))

    // End to end in a child process (so its peak memory is its own), report and plots included.
    let lab = ((CommandLine.arguments[0] as NSString).deletingLastPathComponent as NSString).appendingPathComponent("intnw-lab")
    var analyzerSeconds = inProcess
    if FileManager.default.isExecutableFile(atPath: lab) {
        let r = try timeChild([lab, "analyze", run, "--output", dir + "/out", "--quiet"])
        guard r.status == 0 else { throw BenchError("intnw-lab analyze exited with \(r.status)") }
        analyzerSeconds = r.seconds
        lines.append(String(format: "analyzer: intnw-lab analyze end to end %.2f s, peak memory %.1f MB (maxrss)", r.seconds, Double(r.maxRSSKilobytes) / 1024))
    } else {
        var ru = rusage()
        getrusage(0, &ru)  // RUSAGE_SELF
        lines.append(String(format: "analyzer: intnw-lab not found next to intnw-bench; peak memory of this process %.1f MB (includes synthesis)", Double(ru.ru_maxrss) / 1024))
    }

    if let tshark = which("tshark") {
        let r = try timeChild([tshark, "-q", "-z", "conv,tcp", "-r", pcap])
        if r.status == 0 {
            lines.append(String(format: "analyzer: tshark -q -z conv,tcp %.2f s, peak memory %.1f MB", r.seconds, Double(r.maxRSSKilobytes) / 1024))
            lines.append(String(format: "analyzer: speed ratio tshark/analyzer = %.1fx (goal >= 10x)", r.seconds / analyzerSeconds))
        } else {
            lines.append("analyzer: tshark exited with status \(r.status); no ratio")
        }
    } else {
        lines.append("analyzer: tshark not installed; no ratio (apt-get install tshark)")
    }
    return lines
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

private func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// Runs a program with stdout/stderr discarded; wall time and the child's own peak RSS (wait4).
private func timeChild(_ argv: [String]) throws -> (status: Int32, seconds: Double, maxRSSKilobytes: Int) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var cargs = argv.map { strdup($0) }
    cargs.append(nil)
    defer { for p in cargs { free(p) } }
    var pid: pid_t = 0
    let start = Date()
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
    guard rc == 0 else { throw BenchError("cannot start \(argv[0]): \(Errno(rawValue: rc))") }
    var status: Int32 = 0
    var ru = rusage()
    if case .failure(let e) = Syscall.retrying({ wait4(pid, &status, 0, &ru) }) { throw BenchError("wait4 \(argv[0]): \(e)") }
    let seconds = Date().timeIntervalSince(start)
    let exit = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (exit, seconds, Int(ru.ru_maxrss))
}
