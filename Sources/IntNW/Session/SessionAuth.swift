/// Authenticated attach (docs/wire-protocol.md, "Authenticated attach"): the first connection of a
/// session agrees on a session key (X25519 + HKDF-SHA256); every later connection proves it holds
/// that key with an HMAC-SHA256 over both sides' fresh nonces, the session id and the network id
/// (the model is MPTCP's MP_JOIN and QUIC's path validation). A peer that only knows the session
/// id -- it travels in clear in every HELLO, in logs and in captures -- cannot attach.
///
/// The key is never logged, encoded anywhere but in HMACs, or kept outside `Session.authKey`.
import Crypto

enum AttachAuth {
    /// A fresh random nonce (`Wire.authNonceLength` bytes) from the system CSPRNG.
    static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<Wire.authNonceLength).map { _ in UInt8.random(in: .min ... .max, using: &g) }
    }

    static func newKeyPair() -> Curve25519.KeyAgreement.PrivateKey { Curve25519.KeyAgreement.PrivateKey() }

    /// A valid key share with a fresh key (tests and probes that open throwaway sessions).
    static func freshKeyShare() -> Frame {
        .auth(.keyShare(publicKey: Array(newKeyPair().publicKey.rawRepresentation), nonce: nonce()))
    }

    static func sessionBytes(_ s: SessionID) -> [UInt8] {
        withUnsafeBytes(of: s.high.bigEndian) { Array($0) } + withUnsafeBytes(of: s.low.bigEndian) { Array($0) }
    }

    /// The session key from this side's private key and the peer's public key. Both public keys
    /// and both nonces are bound into it, so a key share replayed with other nonces yields another
    /// key. Nil when the peer's key is invalid (e.g. a low-order point).
    static func sessionKey(privateKey: Curve25519.KeyAgreement.PrivateKey, peerPublicKey: [UInt8], session: SessionID,
                           clientPublicKey: [UInt8], serverPublicKey: [UInt8],
                           clientNonce: [UInt8], serverNonce: [UInt8]) -> SymmetricKey? {
        guard let peer = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerPublicKey),
              let shared = try? privateKey.sharedSecretFromKeyAgreement(with: peer) else { return nil }
        let info = Array("intnw v2 session key".utf8) + clientPublicKey + serverPublicKey + clientNonce + serverNonce
        return shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: sessionBytes(session), sharedInfo: info,
                                              outputByteCount: 32)
    }

    private static func proofMessage(role: Role, session: SessionID, networkID: UInt32,
                                     clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        Array((role == .client ? "intnw v2 client join" : "intnw v2 server join").utf8) + sessionBytes(session)
            + withUnsafeBytes(of: networkID.bigEndian) { Array($0) } + clientNonce + serverNonce
    }

    /// `role`'s proof for one attach: HMAC-SHA256(key, role label | session | network id | nonces).
    static func proof(key: SymmetricKey, role: Role, session: SessionID, networkID: UInt32,
                      clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        let m = proofMessage(role: role, session: session, networkID: networkID, clientNonce: clientNonce, serverNonce: serverNonce)
        return Array(HMAC<SHA256>.authenticationCode(for: m, using: key))
    }

    /// Constant-time check of a peer's proof.
    static func verify(_ proof: [UInt8], key: SymmetricKey, role: Role, session: SessionID, networkID: UInt32,
                       clientNonce: [UInt8], serverNonce: [UInt8]) -> Bool {
        let m = proofMessage(role: role, session: session, networkID: networkID, clientNonce: clientNonce, serverNonce: serverNonce)
        return HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: m, using: key)
    }
}

/// One connection's part of the attach handshake.
struct ConnectionAuth {
    /// Client: this connection carries the session's key share (its ephemeral private key).
    var privateKey: Curve25519.KeyAgreement.PrivateKey?
    /// The client's nonce for this attach.
    var clientNonce: [UInt8] = []
    /// Client: the server's HELLO arrived; its AUTH comes next.
    var helloReceived = false
}

extension Session {
    /// Client: sends HELLO and AUTH on a connected socket -- a key share on the session's first
    /// connection, a join on later ones. A connection that opens while another one's key share
    /// is still unanswered waits (`awaitingKey`), so the server never sees two key shares.
    func startAttach(_ c: Connection) {
        let hello = Frame.hello(Hello(role: .client, session: sessionID, networkID: c.network.networkID,
                                      networkKind: c.network.kind, interfaceName: c.network.interfaceName))
        c.auth.clientNonce = AttachAuth.nonce()
        if authKey == nil {
            if conns.all.contains(where: { $0 !== c && $0.auth.privateKey != nil && $0.state == .awaitingHello }) {
                c.state = .awaitingKey
                return
            }
            let key = AttachAuth.newKeyPair()
            c.auth.privateKey = key
            c.control.append(hello)
            c.control.append(.auth(.keyShare(publicKey: Array(key.publicKey.rawRepresentation), nonce: c.auth.clientNonce)))
        } else {
            c.control.append(hello)
            c.control.append(.auth(.join(nonce: c.auth.clientNonce)))
        }
        c.state = .awaitingHello
        loop.markDirty(self)
    }

    /// Client: connections parked for the key share go ahead (with a join once the key exists,
    /// or one of them with a new key share if the first one failed).
    func startParkedAttaches() {
        for c in conns.all where c.state == .awaitingKey {
            startAttach(c)
        }
    }

    /// Client: a frame on a connection that has not finished its attach.
    func handleAttachFrame(_ f: Frame, on c: Connection, nowNs: UInt64) throws {
        if !c.auth.helloReceived {
            guard case .hello(let h) = f, h.role == .server, h.session == sessionID else {
                throw ProtocolError(.unexpected("expected the server's HELLO, got frame type 0x\(String(f.typeCode, radix: 16))"))
            }
            guard h.version >= Wire.minimumVersion else { throw ProtocolError(.unsupportedVersion(h.version)) }
            c.auth.helloReceived = true
            return
        }
        guard case .auth(let a) = f else {
            throw ProtocolError(.unexpected("expected AUTH after the server's HELLO, got frame type 0x\(String(f.typeCode, radix: 16))"))
        }
        switch a {
        case .keyShare(let serverPublic, let serverNonce):
            guard let mine = c.auth.privateKey, authKey == nil,
                  let key = AttachAuth.sessionKey(privateKey: mine, peerPublicKey: serverPublic, session: sessionID,
                                                  clientPublicKey: Array(mine.publicKey.rawRepresentation),
                                                  serverPublicKey: serverPublic, clientNonce: c.auth.clientNonce,
                                                  serverNonce: serverNonce) else {
                throw ProtocolError(.unexpected("unusable or unrequested key share from the server"))
            }
            authKey = key
            c.auth.privateKey = nil
            establish(c, nowNs: nowNs)
            startParkedAttaches()
        case .challenge(let serverNonce, let proof):
            guard let key = authKey, c.auth.privateKey == nil,
                  AttachAuth.verify(proof, key: key, role: .server, session: sessionID, networkID: c.network.networkID,
                                    clientNonce: c.auth.clientNonce, serverNonce: serverNonce) else {
                throw ProtocolError(.unexpected("the server did not prove it holds this session's key"))
            }
            // Straight into the send buffer, ahead of anything establishing lets the pump queue.
            _ = c.out.append(.auth(.proof(AttachAuth.proof(key: key, role: .client, session: sessionID,
                                                            networkID: c.network.networkID,
                                                            clientNonce: c.auth.clientNonce, serverNonce: serverNonce))))
            establish(c, nowNs: nowNs)
        case .unknownSession:
            // The server restarted or expired the session: what it acknowledged may never reach
            // its application, and nothing more can be sent. Fail loudly, never report "flushed".
            log.warning("server does not know this session (restarted or expired it)")
            fail(.sessionLost("the server no longer knows this session (it restarted or expired it)"), nowNs: nowNs)
        case .join, .proof:
            throw ProtocolError(.unexpected("client-side AUTH from the server"))
        }
    }
}
