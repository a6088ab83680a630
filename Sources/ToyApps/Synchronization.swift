import Foundation
import LinuxSupport

/// A stop request shared by everything one app process runs.
///
/// Roles poll `isStopped` between messages and sleep through `sleep(untilMonotonicNs:)`, which
/// returns early when a stop arrives. Blocked waits elsewhere register an observer that wakes them.
public final class StopToken: Sendable {
    private struct State {
        var stopped = false
        var observers: [@Sendable () -> Void] = []
    }
    private let state = WaitableMutex(State())

    public init() {}

    public var isStopped: Bool { state.withLock { $0.stopped } }

    /// Requests a stop: wakes sleepers and runs every observer (once). Idempotent.
    public func stop() {
        let run: [@Sendable () -> Void] = state.update { s in
            if s.stopped { return [] }
            s.stopped = true
            defer { s.observers.removeAll() }
            return s.observers
        }
        for o in run { o() }
    }

    /// Runs `observer` when a stop is requested (at once if it already was).
    public func onStop(_ observer: @escaping @Sendable () -> Void) {
        let already = state.withLock { s -> Bool in
            if !s.stopped { s.observers.append(observer) }
            return s.stopped
        }
        if already { observer() }
    }

    /// Sleeps until the monotonic time `deadlineNs`. Returns false if a stop came first.
    public func sleep(untilMonotonicNs deadlineNs: UInt64) -> Bool {
        state.wait(until: \.stopped, deadlineMonotonicNs: deadlineNs) { _, stopped in !stopped }
    }
}

/// Counts running threads so an owner can wait, with a deadline, for all of them to finish.
final class ThreadGroup: Sendable {
    private let running = WaitableMutex(0)

    /// Runs `body` on a new thread named `name`.
    func spawn(_ name: String, stackSizeBytes: Int = 512 << 10, _ body: @escaping @Sendable () -> Void) {
        running.withLock { $0 += 1 }
        let t = Thread { [running] in
            body()
            running.update { $0 -= 1 }
        }
        t.name = name
        t.stackSize = stackSizeBytes
        t.start()
    }

    /// Waits until no thread of the group runs, or until the monotonic `deadlineNs` (nil: forever).
    /// Returns true when all finished.
    @discardableResult
    func wait(untilMonotonicNs deadlineNs: UInt64? = nil) -> Bool {
        running.wait(until: { $0 == 0 }, deadlineMonotonicNs: deadlineNs) { _, finished in finished }
    }

    var runningCount: Int { running.withLock { $0 } }
}

/// The toy apps' own executor: one thread that runs the jobs of the tasks `blockingAwait` starts,
/// so the apps never need a thread of Swift's shared cooperative pool (one per core, two here).
/// Code in the same process that blocks pool threads -- a test doing socket calls, say -- once
/// starved the apps: their IntNW calls had completed, but the tasks waiting for them never ran
/// again. The jobs are short (an IntNW call's start and its resumption); nothing here blocks.
final class ToyAppExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = ToyAppExecutor()
    private let jobs = WaitableMutex<[UnownedJob]>([])

    private init() {
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "toy-app-executor"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        jobs.update { $0.append(unowned) }
    }

    private func run() {
        while true {
            let batch = jobs.wait(until: { !$0.isEmpty }) { queue, _ -> [UnownedJob] in
                defer { queue.removeAll(keepingCapacity: true) }
                return queue
            }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}

/// Runs an async operation from a plain thread and blocks that thread until it finishes.
///
/// The IntNW API is async; the apps run each role on a dedicated thread so the plain-TCP variant
/// can block in the kernel, and the async operations run on the apps' own executor
/// (`ToyAppExecutor`), not on Swift's small cooperative pool. Only app threads call this, never
/// code already running in a task.
func blockingAwait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    Task.detached(executorPreference: ToyAppExecutor.shared) {
        do {
            box.set(.success(try await operation()))
        } catch {
            box.set(.failure(error))
        }
    }
    return try box.wait().get()
}

private final class ResultBox<T: Sendable>: Sendable {
    private let result = WaitableMutex<Result<T, Error>?>(nil)

    func set(_ r: Result<T, Error>) { result.update { $0 = r } }

    func wait() -> Result<T, Error> { result.wait(until: { $0 != nil }) { r, _ in r! } }
}
