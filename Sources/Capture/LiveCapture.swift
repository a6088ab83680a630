import CPcap
import LinuxSupport
import CShims
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Options for a live capture.
public struct LiveCaptureOptions: Sendable {
    /// Interface to capture on, e.g. "wifi0".
    public var interface: String
    /// Network namespace to capture in: a name under /run/netns, or an absolute path to a
    /// namespace file (e.g. /proc/PID/ns/net). nil captures in the caller's namespace.
    public var namespace: String?
    /// pcap file to write (created or truncated).
    public var outputPath: String
    /// Bytes kept per packet; the default keeps whole packets (also GSO super-packets).
    public var snapLengthBytes: Int = 262_144
    /// Kernel capture buffer in bytes: larger means fewer drops under bursts.
    public var bufferSizeBytes: Int = 32 << 20
    /// libpcap's packet buffer timeout: the kernel hands a partly filled block of packets over after
    /// this long. Captures are written to files (timestamps come from the kernel), so delivery may
    /// wait; what matters is that no packet is dropped. libpcap's immediate mode would fall back to
    /// Linux's TPACKET_V2 ring of fixed-size slots, one per packet, each as large as the snap length
    /// (256 KiB here): 16 MiB then held only 64 packets, and a capture thread that lost the CPU for a
    /// few milliseconds dropped packets (seen in 10-minute drives on a busy machine). With a timeout
    /// libpcap uses TPACKET_V3, whose blocks pack packets by their real length.
    public var bufferTimeoutMilliseconds: Int = 50
    /// Ask for nanosecond timestamps (falls back to microseconds when unsupported).
    public var nanosecondTimestamps: Bool = true
    /// Optional BPF filter expression (tcpdump syntax).
    public var filter: String?
    /// Write `CaptureStats` next to the pcap as `<outputPath>.stats.json` on stop.
    public var writeStatsSidecar: Bool = true

    public init(interface: String, namespace: String? = nil, outputPath: String) {
        self.interface = interface
        self.namespace = namespace
        self.outputPath = outputPath
    }
}

/// A live libpcap capture writing a pcap file, running on its own thread.
///
/// `start` returns once the capture is active (so traffic sent afterwards is captured) or throws
/// why it could not start. The capture thread enters the namespace with setns (which moves only
/// the calling thread, hence a dedicated thread and never a Swift concurrency task), then loops on
/// `poll` over libpcap's selectable fd and a wake-up pipe, so `stop` takes effect at once; packets
/// already in the kernel buffer are drained into the file before it closes.
// @unchecked: state shared with the capture thread is in Mutex/semaphores; the rest is immutable after start.
public final class LiveCapture: @unchecked Sendable {
    public let options: LiveCaptureOptions
    private let state: Mutex<StopState>
    private let done = DispatchSemaphore(value: 0)
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var result: Result<CaptureStats, CaptureError>?
    private let startedAt: UInt64

    private struct StopState { var stopRequested = false; var stopped = false; var startError: CaptureError? }

    private init(options: LiveCaptureOptions, wakeRead: Int32, wakeWrite: Int32) {
        self.options = options
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
        self.state = Mutex(StopState())
        self.startedAt = cshims_realtime_ns()
    }

    // The capture thread holds a reference until it ends, so a capture that is never stopped
    // keeps running: callers must call `stop()` (the harness does, also on failure paths).
    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Starts capturing; returns when the capture is active.
    public static func start(_ options: LiveCaptureOptions) throws(CaptureError) -> LiveCapture {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .threadStartFailed("pipe: \(errnoText(.last))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        let capture = LiveCapture(options: options, wakeRead: fds[0], wakeWrite: fds[1])
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [capture] in
            capture.run(ready: ready)
        }
        thread.name = "pcap-\(options.interface)"
        thread.start()
        if ready.wait(timeout: .now() + 30) == .timedOut {
            throw .threadStartFailed("capture on \(options.interface) did not become active within 30 s")
        }
        if let e = capture.state.withLock({ $0.startError }) {
            capture.state.withLock { $0.stopped = true }
            capture.done.wait()
            throw e
        }
        return capture
    }

    /// Stops the capture, drains what the kernel already holds, closes the file and returns the
    /// counters (also written as a sidecar unless disabled).
    @discardableResult
    public func stop() throws(CaptureError) -> CaptureStats {
        let already = state.withLock { s -> Bool in
            let was = s.stopRequested
            s.stopRequested = true
            return was
        }
        if already {
            guard let r = result else { throw .alreadyStopped }
            return try r.get()
        }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        done.wait()
        state.withLock { $0.stopped = true }
        let stats = try result!.get()
        if options.writeStatsSidecar { try stats.writeSidecar() }
        return stats
    }

    private var stopRequested: Bool { state.withLock { $0.stopRequested } }

    // MARK: capture thread

    private func run(ready: DispatchSemaphore) {
        defer { done.signal() }
        let handle: PcapHandle
        do {
            handle = try open()
        } catch {
            state.withLock { $0.startError = error }
            result = .failure(error)
            ready.signal()
            return
        }
        ready.signal()
        result = loop(handle)
    }

    private func open() throws(CaptureError) -> PcapHandle {
        if let ns = options.namespace { try enterNamespace(ns) }
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let p = pcap_create(options.interface, &errbuf) else {
            throw .activateFailed(interface: options.interface, detail: String(cString: errbuf))
        }
        let handle = PcapHandle(p)
        pcap_set_snaplen(p, Int32(options.snapLengthBytes))
        pcap_set_timeout(p, Int32(options.bufferTimeoutMilliseconds))
        pcap_set_buffer_size(p, Int32(options.bufferSizeBytes))
        pcap_set_promisc(p, 0)
        if options.nanosecondTimestamps {
            // Unsupported precision is not an error: the file then gets microsecond timestamps.
            _ = pcap_set_tstamp_precision(p, Int32(PCAP_TSTAMP_PRECISION_NANO))
        }
        let rc = pcap_activate(p)
        if rc < 0 {
            let detail = handle.lastError
            switch rc {
            case PCAP_ERROR_NO_SUCH_DEVICE: throw .noSuchInterface(options.interface)
            case PCAP_ERROR_PERM_DENIED: throw .permissionDenied(interface: options.interface, detail: detail)
            default:
                let text = detail.isEmpty ? String(cString: pcap_statustostr(rc)) : detail
                throw .activateFailed(interface: options.interface, detail: text)
            }
        }
        if let f = options.filter {
            var prog = bpf_program()
            guard pcap_compile(p, &prog, f, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                throw .badFilter(f, detail: handle.lastError)
            }
            defer { pcap_freecode(&prog) }
            guard pcap_setfilter(p, &prog) == 0 else { throw .badFilter(f, detail: handle.lastError) }
        }
        guard pcap_setnonblock(p, 1, &errbuf) == 0 else {
            throw .activateFailed(interface: options.interface, detail: String(cString: errbuf))
        }
        try handle.openDumper(path: options.outputPath)
        // Make the (empty) file visible at once: a run that dies early still leaves a valid pcap.
        if let d = handle.dumper { pcap_dump_flush(d) }
        return handle
    }

    private func enterNamespace(_ ns: String) throws(CaptureError) {
        do throws(SystemCallError) {
            try NetworkNamespaceEntry.enter(ns)
        } catch {
            if error.call.hasPrefix("open"), error.errno == .noSuchFileOrDirectory { throw .namespaceNotFound(ns) }
            throw .enterNamespaceFailed(namespace: ns, errno: error.errno)
        }
    }

    private func loop(_ handle: PcapHandle) -> Result<CaptureStats, CaptureError> {
        let pcapFD = pcap_get_selectable_fd(handle.pcap)
        var fds = [pollfd(fd: pcapFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        var written = 0
        var failure: CaptureError?
        func drain() {
            while true {
                let n = pcap_dispatch(handle.pcap, -1, pcap_dump, handle.dumperAsUser)
                if n > 0 { written += Int(n); continue }
                if n < 0 && n != PCAP_ERROR_BREAK {
                    failure = .activateFailed(interface: options.interface, detail: handle.lastError)
                }
                return
            }
        }
        while !stopRequested && failure == nil {
            // The 200 ms timeout is a safety net only; the wake-up pipe ends the wait on stop.
            if case .failure(let e) = Syscall.retrying({ poll(&fds, 2, 200) }) {
                failure = .activateFailed(interface: options.interface, detail: "poll: \(errnoText(e))")
                break
            }
            if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                // The interface went away (e.g. namespace deleted): keep what was captured.
                drain()
                break
            }
            drain()
        }
        // The kernel hands over its last, partly filled block when the buffer timeout expires:
        // keep draining for two timeouts so packets seen before stop() reach the file.
        let settleNs = UInt64(max(options.bufferTimeoutMilliseconds, 1)) * 2_000_000 + 20_000_000
        let settleEnd = cshims_monotonic_ns() + settleNs
        while failure == nil {
            let now = cshims_monotonic_ns()
            if now >= settleEnd { break }
            var one = [pollfd(fd: pcapFD, events: Int16(POLLIN), revents: 0)]
            _ = Syscall.retrying({ poll(&one, 1, Int32((settleEnd - now) / 1_000_000) + 1) })
            drain()
            if one[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { break }
        }
        var ps = pcap_stat()
        let haveStats = pcap_stats(handle.pcap, &ps) == 0
        let precision = handle.precision
        if !handle.closeDumper() && failure == nil {
            failure = .writeFailed(path: options.outputPath, detail: "flush failed")
        }
        if let f = failure { return .failure(f) }
        return .success(CaptureStats(
            interface: options.interface, namespace: options.namespace, file: options.outputPath,
            timestampPrecision: precision, packetsWritten: written,
            kernelReceived: haveStats ? UInt64(ps.ps_recv) : 0,
            kernelDropped: haveStats ? UInt64(ps.ps_drop) : 0,
            interfaceDropped: haveStats ? UInt64(ps.ps_ifdrop) : 0,
            startedAtNanoseconds: startedAt, stoppedAtNanoseconds: cshims_realtime_ns()))
    }
}
