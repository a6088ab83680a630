import Foundation
@testable import IntNW
import TestSupport

/// Randomized tests use the project's one seeded generator.
typealias SplitMix64 = DeterministicRNG

/// One frame of every type, with non-trivial field values.
func sampleFrames() -> [Frame] {
    let session = SessionID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
    return [
        .hello(Hello(role: .client, session: session, networkID: 7, networkKind: .wifi, interfaceName: "wlan0")),
        .hello(Hello(version: 9, role: .server, session: session, networkID: 0, networkKind: .cellular, interfaceName: "")),
        .beginIROB(BeginIROB(id: IROBID(42), labels: .foreground | .small | .wifiOnly, length: 1234,
                             dependencies: .allEarlier)),
        .beginIROB(BeginIROB(id: IROBID(43), labels: .background | .large, length: 0,
                             dependencies: .explicit([IROBID(1), IROBID(40), IROBID(42)]))),
        .beginIROB(BeginIROB(id: IROBID(2), labels: .none, length: UInt32.max, dependencies: .explicit([]))),
        .data(DataChunk(id: IROBID(42), offset: 1000, bytes: [1, 2, 3, 4, 5, 250])),
        .data(DataChunk(id: IROBID(1), offset: 0, bytes: [])),
        .endIROB(id: IROBID(42), length: 1234),
        .ack(Ack(cumulative: 40, entries: [AckEntry(id: IROBID(42), holdMicroseconds: 17),
                                           AckEntry(id: IROBID(41), holdMicroseconds: 0)])),
        .ack(Ack(cumulative: 0, entries: [])),
        .resendRequest(ResendRequest(id: IROBID(42), needsBegin: true, offset: 10, length: 90)),
        .resendRequest(ResendRequest(id: IROBID(5), needsBegin: false, offset: 0, length: 0)),
        .dataCheck(ids: [IROBID(3), IROBID(99)]),
        .newInterface(InterfaceInfo(networkID: 3, kind: .cellular, ipv4Address: 0xC612_0202, name: "cell0")),
        .downInterface(networkID: 3),
        .goodbye(Goodbye(reason: .closed, lastID: 1000)),
        .goodbye(Goodbye(reason: .abandoned, lastID: 0)),
        .ping(nonce: 0xDEAD_BEEF),
        .pong(nonce: 0xDEAD_BEEF, holdMicroseconds: 12),
        .auth(.keyShare(publicKey: Array(repeating: 7, count: Wire.authKeyLength), nonce: Array(repeating: 1, count: Wire.authNonceLength))),
        .auth(.join(nonce: Array(repeating: 2, count: Wire.authNonceLength))),
        .auth(.challenge(nonce: Array(repeating: 3, count: Wire.authNonceLength), proof: Array(repeating: 4, count: Wire.authProofLength))),
        .auth(.proof(Array(repeating: 5, count: Wire.authProofLength))),
        .auth(.unknownSession),
        .extension(type: 0x80, body: [9, 8, 7]),
    ]
}

/// Runs blocking code (socket calls with timeouts, sleeps) on a thread of its own. Never block
/// Swift's cooperative pool in a test: it has one thread per core (two here), Swift Testing runs
/// every suite's tests on it, and the toy apps and IntNW's async API need it to make progress; a
/// probe that held a pool thread for its whole run let another blocking test stall every task in
/// the process (a toy-app run then ended with its last request unanswered).
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread {
            do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
        }.start()
    }
}
