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

/// A TCP connection over loopback with 1,000 bytes already sent and acknowledged, so that the
/// kernel reports RTTs for it (TCP_INFO). Returns the listener, the connecting end and the
/// accepted end; the caller closes all three.
func loopbackTCPConnection() throws -> (listener: Int32, client: Int32, server: Int32) {
    let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard l >= 0 else { throw IntNWError.invalidArgument("socket: errno \(errno)") }
    var handedOver = false
    defer { if !handedOver { close(l) } }
    guard IPv4Endpoint("127.0.0.1", port: 0)!.withSockaddr({ bind(l, $0, $1) }) == 0, listen(l, 1) == 0,
          let a = IPv4Endpoint.receiving({ getsockname(l, $0, $1) }).endpoint else {
        throw IntNWError.invalidArgument("loopback listener: errno \(errno)")
    }
    let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard c >= 0, a.withSockaddr({ connect(c, $0, $1) }) == 0 else {
        if c >= 0 { close(c) }
        throw IntNWError.invalidArgument("loopback connect: errno \(errno)")
    }
    let s = accept(l, nil, nil)
    guard s >= 0 else { close(c); throw IntNWError.invalidArgument("loopback accept: errno \(errno)") }
    var bytes = [UInt8](repeating: 7, count: 1000)
    let sent = send(c, &bytes, bytes.count, 0)
    let received = recv(s, &bytes, bytes.count, Int32(MSG_WAITALL))
    guard sent == 1000, received == 1000 else {
        close(c); close(s)
        throw IntNWError.invalidArgument("loopback exchange: sent \(sent), received \(received)")
    }
    usleep(20_000)  // the ACK
    handedOver = true
    return (l, c, s)
}
