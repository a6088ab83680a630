/// One I/O thread: a ppoll loop over nonblocking sockets, a self-pipe for wake-ups, and timers.
///
/// Everything the loop serves (sessions, connections, the listener, the network monitor) is
/// mutated only while holding `lock`: the loop thread holds it while it handles ready events, API
/// callers hold it briefly to enqueue or dequeue. Continuations are resumed after the lock is
/// released (`deferAfterUnlock`), never under it.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import LinuxSupport
import Synchronization
import SystemPackage

/// Something with file descriptors on the loop.
protocol IOHandler: AnyObject {
    /// poll(2) events wanted for `fd` right now (POLLIN / POLLOUT); 0 = none. Called under the lock.
    func pollEvents(fd: Int32) -> Int16
    /// `fd` is ready. Called under the lock on the loop thread.
    func handle(fd: Int32, revents: Int16, nowNs: UInt64)
}

/// Something that wants a call at the end of a loop iteration after it was marked dirty.
protocol IOService: AnyObject {
    func service(nowNs: UInt64)
}

// @unchecked: every mutable member is touched only under `lock` or on the loop thread.
final class IOLoop: @unchecked Sendable {
    /// Guards the loop's state and everything the loop serves (it holds no value itself).
    private let lock = Mutex(())
    private let wakeFD: Int32
    private let wakeWriteFD: Int32
    private var handlers: [Int32: IOHandler] = [:]
    private var tasks: [() -> Void] = []
    private var timers: [(deadlineNs: UInt64, seq: UInt64, action: () -> Void)] = []
    private var timerSeq: UInt64 = 0
    private var dirty: [ObjectIdentifier: IOService] = [:]
    private var afterUnlock: [() -> Void] = []
    private var stopping = false
    /// A wake-up byte is in the pipe and not yet drained (under the lock): skip writing another.
    private var wakePending = false
    private var pollFDs: [pollfd] = []
    private var thread: pthread_t?
    let name: String
    /// Longest time, ns, one pass of the loop thread held the lock (handling ready descriptors,
    /// tasks, timers and dirty services): how long every other session of this loop could be kept
    /// waiting by one pass. Read and reset under the lock (tests and the hostile probes).
    private(set) var longestPassNs: UInt64 = 0
    /// Under the lock.
    func resetPassStats() { longestPassNs = 0 }

    /// Starts the loop thread. With `namespacePath` (e.g. /var/run/netns/NAME) the thread first
    /// joins that network namespace, so every socket it creates lives there.
    init(name: String, namespacePath: String? = nil) throws {
        self.name = name
        var fds: [Int32] = [0, 0]
        if pipe(&fds) < 0 { throw IntNWError.errno("pipe") }
        for f in fds {
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        }
        let fd = fds[0]
        wakeFD = fds[0]
        wakeWriteFD = fds[1]
        let started = StartGate()
        let box = Unmanaged.passRetained(ThreadBox(loop: self, namespacePath: namespacePath, gate: started))
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            let box = Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue()
            box.loop.threadMain(namespacePath: box.namespacePath, gate: box.gate)
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            Glibc.close(fd)
            Glibc.close(wakeWriteFD)
            throw IntNWError.system(call: "pthread_create", errno: Errno(rawValue: rc))
        }
        thread = tid
        if let err = started.wait() {
            pthread_join(tid, nil)
            thread = nil
            Glibc.close(fd)
            Glibc.close(wakeWriteFD)
            throw err
        }
    }

    deinit {
        Glibc.close(wakeFD)
        Glibc.close(wakeWriteFD)
    }

    private final class ThreadBox {
        let loop: IOLoop
        let namespacePath: String?
        let gate: StartGate
        init(loop: IOLoop, namespacePath: String?, gate: StartGate) {
            self.loop = loop
            self.namespacePath = namespacePath
            self.gate = gate
        }
    }

    /// Blocks the creating thread until the loop thread has joined its namespace (or failed to).
    private final class StartGate: Sendable {
        /// nil until the thread started; then the failure, if any.
        private let outcome = WaitableMutex<IntNWError??>(nil)
        func open(_ e: IntNWError?) { outcome.update { $0 = .some(e) } }
        func wait() -> IntNWError? { outcome.wait(until: { $0 != nil }) { o, _ in o! } }
    }

    /// Runs `body` under the lock, then (unlocked) whatever it deferred, also when `body` throws.
    @discardableResult
    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        var result: Result<R, E>?
        var after: [() -> Void] = []
        lock.withLock { _ in
            result = Result { () throws(E) -> R in try body() }
            after = takeDeferred()
        }
        for a in after { a() }
        return try result!.get()
    }

    private func takeDeferred() -> [() -> Void] {
        if afterUnlock.isEmpty { return [] }
        defer { afterUnlock.removeAll() }
        return afterUnlock
    }

    /// Under the lock: run `action` once the lock is released (continuation resumes).
    func deferAfterUnlock(_ action: @escaping () -> Void) { afterUnlock.append(action) }

    /// Under the lock.
    func register(fd: Int32, _ h: IOHandler) { handlers[fd] = h }
    /// Under the lock. The caller closes the fd afterwards.
    func unregister(fd: Int32) { handlers[fd] = nil }

    /// Under the lock: call `action` (under the lock, on the loop thread) at `deadlineNs` or later.
    func schedule(atNs deadlineNs: UInt64, _ action: @escaping () -> Void) {
        timerSeq += 1
        timers.append((deadlineNs, timerSeq, action))
    }

    /// Under the lock: `s.service` runs at the end of the current or next iteration.
    func markDirty(_ s: IOService) {
        dirty[ObjectIdentifier(s)] = s
    }

    /// Under the lock: run `task` on the loop thread (under the lock).
    func execute(_ task: @escaping () -> Void) {
        tasks.append(task)
    }

    /// Any thread, not holding the lock: interrupt ppoll. Coalesced: at most one wake-up byte
    /// is outstanding.
    func wake() {
        lock.withLock { _ in wakeLocked() }
    }

    /// Like `wake`, for callers holding the lock.
    func wakeLocked() {
        guard !wakePending && !isLoopThread else { return }
        wakePending = true
        var one: UInt8 = 1
        _ = Glibc.write(wakeWriteFD, &one, 1)
    }

    /// Any thread: stop the loop thread and wait for it (not from the loop thread itself).
    func stopAndJoin() {
        withLock { stopping = true }
        wake()
        if let t = thread, pthread_equal(t, pthread_self()) == 0 {
            pthread_join(t, nil)
            thread = nil
        }
    }

    /// Under the lock: stop after this iteration (from the loop thread).
    func requestStop() { stopping = true }

    var isLoopThread: Bool {
        guard let t = thread else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    private func threadMain(namespacePath: String?, gate: StartGate) {
        if let path = namespacePath {
            do throws(SystemCallError) {
                try NetworkNamespaceEntry.enter(path)
            } catch {
                gate.open(IntNWError(error))
                return
            }
        }
        gate.open(nil)
        run()
    }

    private func run() {
        var polled = 0
        while true {
            // Under the lock: the events the last ppoll returned, tasks and timers, dirty services,
            // and the next poll set; then (unlocked) what that deferred, and ppoll.
            var stop = false
            var timeoutNs: Int64 = -1
            var after: [() -> Void] = []
            lock.withLock { _ in
                let start = cshims_monotonic_ns()
                if polled > 0 { handlePolled() }
                let now = cshims_monotonic_ns()
                runTasksAndTimers(now)
                serviceDirty(now)
                stop = stopping
                if !stop { timeoutNs = buildPollSet(now) }
                after = takeDeferred()
                longestPassNs = max(longestPassNs, cshims_monotonic_ns() &- start)
            }
            for a in after { a() }
            if stop { return }
            polled = Int(pollFDs.withUnsafeMutableBufferPointer {
                cshims_ppoll_ns($0.baseAddress, UInt(CUnsignedLong($0.count)), timeoutNs)
            })
        }
    }

    /// Under the lock: fills `pollFDs` (the wake pipe first) and returns ppoll's timeout, ns (-1: none).
    private func buildPollSet(_ now: UInt64) -> Int64 {
        pollFDs.removeAll(keepingCapacity: true)
        pollFDs.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        for (fd, h) in handlers {
            let ev = h.pollEvents(fd: fd)
            // An fd with no interest still reports errors/hangups.
            pollFDs.append(pollfd(fd: fd, events: ev, revents: 0))
        }
        if !tasks.isEmpty || !dirty.isEmpty { return 0 }
        if let next = timers.min(by: { $0.deadlineNs < $1.deadlineNs })?.deadlineNs {
            return next > now ? Int64(next - now) : 0
        }
        return -1
    }

    /// Under the lock: hands the ready descriptors of the last ppoll to their handlers.
    private func handlePolled() {
        let woke = cshims_monotonic_ns()
        for p in pollFDs where p.revents != 0 {
            if p.fd == wakeFD {
                wakePending = false
                var drain = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
                _ = withUnsafeMutableBytes(of: &drain) { Glibc.read(wakeFD, $0.baseAddress, $0.count) }
                continue
            }
            // The handler may have been removed by an earlier one in this batch.
            if let h = handlers[p.fd] { h.handle(fd: p.fd, revents: p.revents, nowNs: woke) }
        }
    }

    private func runTasksAndTimers(_ now: UInt64) {
        while !tasks.isEmpty {
            let t = tasks
            tasks.removeAll()
            for task in t { task() }
        }
        if timers.isEmpty { return }
        var due: [(deadlineNs: UInt64, seq: UInt64, action: () -> Void)] = []
        timers.removeAll { t in
            if t.deadlineNs <= now {
                due.append(t)
                return true
            }
            return false
        }
        for t in due.sorted(by: { ($0.deadlineNs, $0.seq) < ($1.deadlineNs, $1.seq) }) { t.action() }
    }

    private func serviceDirty(_ now: UInt64) {
        var rounds = 0
        while !dirty.isEmpty && rounds < 4 {
            let d = dirty
            dirty.removeAll(keepingCapacity: true)
            for s in d.values { s.service(nowNs: now) }
            rounds += 1
        }
    }
}
