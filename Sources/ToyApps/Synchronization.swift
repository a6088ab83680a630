import Foundation

/// A stop request shared by everything one app process runs.
///
/// Roles poll `isStopped` between messages and sleep through `sleep(untilMonotonicNs:)`, which
/// returns early when a stop arrives. Blocked waits elsewhere register an observer that wakes them.
// @unchecked: the flag and observers are touched only under `cond` (NSCondition).
public final class StopToken: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false
    private var observers: [@Sendable () -> Void] = []

    public init() {}

    public var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Requests a stop: wakes sleepers and runs every observer (once). Idempotent.
    public func stop() {
        condition.lock()
        if stopped {
            condition.unlock()
            return
        }
        stopped = true
        let run = observers
        observers.removeAll()
        condition.broadcast()
        condition.unlock()
        for o in run { o() }
    }

    /// Runs `observer` when a stop is requested (at once if it already was).
    public func onStop(_ observer: @escaping @Sendable () -> Void) {
        condition.lock()
        if stopped {
            condition.unlock()
            observer()
            return
        }
        observers.append(observer)
        condition.unlock()
    }

    /// Sleeps until the monotonic time `deadlineNs`. Returns false if a stop came first.
    public func sleep(untilMonotonicNs deadlineNs: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            let now = AppClock.monotonicNs()
            if now >= deadlineNs { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: Double(deadlineNs - now) / 1e9))
        }
        return false
    }
}

/// Counts running threads so an owner can wait, with a deadline, for all of them to finish.
// @unchecked: the count is touched only under `cond` (NSCondition).
final class ThreadGroup: @unchecked Sendable {
    private let condition = NSCondition()
    private var running = 0

    /// Runs `body` on a new thread named `name`.
    func spawn(_ name: String, stackSizeBytes: Int = 512 << 10, _ body: @escaping @Sendable () -> Void) {
        condition.lock()
        running += 1
        condition.unlock()
        let t = Thread { [self] in
            body()
            condition.lock()
            running -= 1
            condition.broadcast()
            condition.unlock()
        }
        t.name = name
        t.stackSize = stackSizeBytes
        t.start()
    }

    /// Waits until no thread of the group runs, or until the monotonic `deadlineNs` (nil: forever).
    /// Returns true when all finished.
    @discardableResult
    func wait(untilMonotonicNs deadlineNs: UInt64? = nil) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while running > 0 {
            if let d = deadlineNs {
                let now = AppClock.monotonicNs()
                if now >= d { return false }
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(d - now) / 1e9))
            } else {
                condition.wait()
            }
        }
        return true
    }

    var runningCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return running
    }
}

/// Runs an async operation from a plain thread and blocks that thread until it finishes.
///
/// The IntNW API is async; the apps run each role on a dedicated thread so the plain-TCP variant
/// can block in the kernel without starving Swift's small cooperative pool. Only app threads
/// call this, never code already running in a task.
func blockingAwait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    Task.detached {
        do {
            box.set(.success(try await operation()))
        } catch {
            box.set(.failure(error))
        }
    }
    return try box.wait().get()
}

// @unchecked: `result` is touched only under `cond` (NSCondition).
private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<T, Error>?

    func set(_ r: Result<T, Error>) {
        condition.lock()
        result = r
        condition.signal()
        condition.unlock()
    }

    func wait() -> Result<T, Error> {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return result!
    }
}
