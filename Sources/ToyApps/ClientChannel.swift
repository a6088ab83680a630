import Foundation
import Synchronization
import ToyProtocol

/// Receives the answers (fgReply, bgAck) a client's requests and chunks get back.
protocol AnswerConsumer: AnyObject, Sendable {
    var appID: UInt32 { get }
    /// The kind of message this consumer expects (fgReply or bgAck).
    var answerKind: ToyMessageKind { get }
    /// Called on the channel's reader thread for each answer addressed to this consumer.
    func deliver(_ message: ReceivedMessage)
    /// Called once when the channel stops receiving: nil for an orderly end of stream.
    func connectionEnded(_ error: ToyAppError?)
}

/// One client connection (socket or multisocket), possibly shared by several client apps, and the
/// thread that reads its answers and routes them by app id.
///
/// Sharing is how "one multisocket for an FG and a BG app" is built: both send on the same
/// connection and this router hands each answer to the app whose id it carries.
// @unchecked: consumers and strays are touched only under `lock` (a Mutex guarding no value of its own).
final class ClientChannel: @unchecked Sendable {
    let connection: ToyConnection
    private var consumers: [UInt32: AnswerConsumer] = [:]
    private let warn: @Sendable (String) -> Void
    private let lock = Mutex(())
    private var strays: UInt64 = 0

    init(connection: ToyConnection, warn: @escaping @Sendable (String) -> Void) {
        self.connection = connection
        self.warn = warn
    }

    /// Registers a consumer; must happen before `startReader`.
    func register(_ c: AnswerConsumer) {
        consumers[c.appID] = c
    }

    /// Answers that matched no registered app or carried the wrong kind.
    var strayMessages: UInt64 {
        lock.withLock { _ in
            return strays
        }
    }

    /// Starts the reader thread in `group`.
    func startReader(in group: ThreadGroup) {
        let consumers = self.consumers
        group.spawn("toy-reader") { [self] in
            var endError: ToyAppError?
            while true {
                let m: ReceivedMessage?
                do throws(ToyAppError) {
                    m = try connection.receive()
                } catch {
                    endError = error
                    break
                }
                guard let m else { break }
                if let c = consumers[m.header.appID], c.answerKind == m.header.kind {
                    c.deliver(m)
                } else {
                    let first = lock.withLock { _ in
                        strays += 1
                        return strays == 1
                    }
                    if first {
                        warn("ignoring \(m.header.kind) for app \(m.header.appID) from \(connection.peerDescription) "
                             + "(no such app on this connection; further ones are only counted)")
                    }
                }
            }
            for c in consumers.values { c.connectionEnded(endError) }
        }
    }
}
