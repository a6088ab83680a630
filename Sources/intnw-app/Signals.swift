#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Signal handling for the app process: SIGINT/SIGTERM ask for a clean shutdown.
///
/// `prepare()` runs first thing in `main`, before any thread exists: it blocks SIGINT, SIGTERM and
/// SIGUSR1 in the main thread, and every thread created later inherits that mask, so the signals
/// stay pending until the main thread collects them with `sigtimedwait`. Worker threads wake the
/// main thread by raising SIGUSR1. A thread that was created before `prepare()` (by a runtime) and
/// has the signals unblocked would otherwise die of SIGTERM's default action: the fallback handlers
/// record the signal instead, and the main loop checks that record at least once a second.
enum Signals {
    private static let fallbackSignal = Atomic<Int32>(0)

    private static var waitSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGUSR1)
        return set
    }

    static func prepare() {
        // A peer that disappears must give EPIPE, not kill the process.
        signal(SIGPIPE, SIG_IGN)
        var set = waitSet
        pthread_sigmask(SIG_BLOCK, &set, nil)
        for s in [SIGINT, SIGTERM, SIGUSR1] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                if sig != SIGUSR1 { Signals.fallbackSignal.store(sig, ordering: .relaxed) }
            }
            sigemptyset(&action.sa_mask)
            sigaction(s, &action, nil)
        }
    }

    /// What ended a wait.
    enum Event: Equatable {
        /// SIGINT or SIGTERM (the signal number).
        case shutdown(Int32)
        /// A worker asked the main thread to look at its state.
        case wake
        /// The timeout passed.
        case timeout
    }

    /// Waits for a signal, at most `timeoutNs` (capped at one second, see the type's note).
    static func wait(timeoutNs: UInt64) -> Event {
        let sig = fallbackSignal.exchange(0, ordering: .relaxed)
        if sig != 0 { return .shutdown(sig) }
        let capped = min(timeoutNs, 1_000_000_000)
        var ts = timespec(tv_sec: Int(capped / 1_000_000_000), tv_nsec: Int(capped % 1_000_000_000))
        var set = waitSet
        let r = sigtimedwait(&set, nil, &ts)
        switch r {
        case SIGINT, SIGTERM: return .shutdown(r)
        case SIGUSR1: return .wake
        default:
            let late = fallbackSignal.exchange(0, ordering: .relaxed)
            return late != 0 ? .shutdown(late) : .timeout
        }
    }

    /// Wakes the main thread's `wait` (callable from any thread).
    static func wakeMain() {
        kill(getpid(), SIGUSR1)
    }

    static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(sig)"
        }
    }
}
