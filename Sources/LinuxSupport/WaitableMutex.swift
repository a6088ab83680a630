/// The project's one condition primitive: a value guarded by a mutex that threads can also wait on.
/// The standard library's `Mutex` (used everywhere else) cannot be waited on, so code that must
/// block a thread until some state changes (the toy apps' clients, IntNW's loop start-up) uses
/// this instead of NSCondition or a hand-made pthread pair.
#if canImport(Glibc)
import Glibc
#endif

public final class WaitableMutex<Value> {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // Deadlines are on the monotonic clock: a wall-clock step must not stretch or cut a wait.
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the mutex.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Runs `body` with the value and wakes every waiter afterwards (for a change waiters care about).
    public func update<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return try body(&value)
    }

    /// Wakes every waiter so it checks its condition again.
    public func broadcast() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Blocks until `ready(value)` holds or the monotonic clock reaches `deadlineNs` (nil: no
    /// deadline), then runs `body` with the value, the mutex still held. `body`'s second argument
    /// says whether `ready` held (false: the deadline passed first).
    public func wait<R>(until ready: (Value) -> Bool, deadlineMonotonicNs deadlineNs: UInt64? = nil,
                        then body: (inout Value, Bool) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var met = ready(value)
        while !met {
            if let deadlineNs {
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
                if now >= deadlineNs { break }
                var until = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
                pthread_cond_timedwait(condition, mutex, &until)
            } else {
                pthread_cond_wait(condition, mutex)
            }
            met = ready(value)
        }
        return try body(&value, met)
    }
}

// @unchecked: `value` is only touched with `mutex` held (every access goes through `withLock`/`update`/`wait`).
extension WaitableMutex: @unchecked Sendable where Value: Sendable {}
