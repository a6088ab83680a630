import CMnl
import CShims
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import SystemPackage

/// An rtnetlink socket bound inside one network namespace. Owns the libmnl socket and the receive
/// buffer; callers see only `NetlinkRequest` in and `NetlinkMessage` out.
///
/// Not thread-safe: one request at a time (NetemShaper serializes with its lock).
public final class NetlinkSocket {
    /// Where the socket lives, for error messages.
    public let namespace: NetlinkNamespace
    private let socket: OpaquePointer
    private var buffer: [UInt8]
    private var sequence: UInt32
    /// Large enough for any single dump chunk (libmnl's MNL_SOCKET_DUMP_SIZE).
    private static let receiveBufferSize = 32 * 1024
    /// Replies come within microseconds; this only bounds a hang if the kernel never answers.
    private static let receiveTimeoutSeconds = 5

    /// Opens a socket inside `namespace` (entering it on a short-lived thread).
    public static func open(in namespace: NetlinkNamespace) throws -> NetlinkSocket {
        try namespace.run { try NetlinkSocket(openingHere: namespace) }
    }

    /// Opens a socket in the calling thread's current namespace, labeled `namespace` in errors.
    init(openingHere namespace: NetlinkNamespace) throws {
        self.namespace = namespace
        guard let socket = mnl_socket_open(NETLINK_ROUTE) else {
            throw NetlinkError.system(call: "mnl_socket_open(NETLINK_ROUTE)", namespace: namespace.description, errno: .last)
        }
        self.socket = socket
        buffer = [UInt8](repeating: 0, count: Self.receiveBufferSize)
        sequence = UInt32(truncatingIfNeeded: cshims_monotonic_ns())
        guard mnl_socket_bind(socket, 0, pid_t(0)) == 0 else {
            let e = Errno.last
            mnl_socket_close(socket)
            throw NetlinkError.system(call: "mnl_socket_bind", namespace: namespace.description, errno: e)
        }
        // Extended acks carry the kernel's own error text; capped acks keep error replies short.
        // Both are best effort: older kernels answer without them.
        var on: Int32 = 1
        _ = mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &on, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: Self.receiveTimeoutSeconds, tv_usec: 0)
        _ = setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { mnl_socket_close(socket) }

    /// Sends `request` (which asks for an ack) and waits for the ack. Throws the kernel's error, if any.
    public func perform(_ request: NetlinkRequest) throws {
        _ = try exchange(request)
    }

    /// Sends `request` and returns the reply messages received before the ack or NLMSG_DONE.
    public func query(_ request: NetlinkRequest) throws -> [NetlinkMessage] {
        try exchange(request)
    }

    private func exchange(_ request: NetlinkRequest) throws -> [NetlinkMessage] {
        let label = namespace.description
        sequence &+= 1
        let seq = sequence
        var bytes = request.bytes
        guard bytes.count >= NetlinkMessage.headerSize else {
            throw NetlinkError.system(call: "send \(request.operation) (request shorter than a header)", namespace: label, errno: .invalidArgument)
        }
        withUnsafeBytes(of: seq) { for i in 0..<4 { bytes[8 + i] = $0[i] } }

        let sent = bytes.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, $0.count) }
        guard sent == bytes.count else {
            throw NetlinkError.system(call: "send \(request.operation)", namespace: label, errno: sent < 0 ? .last : .messageTooLong)
        }

        var replies: [NetlinkMessage] = []
        while true {
            let received: Int
            switch Syscall.retrying({ buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) } }) {
            case .success(let n): received = n
            case .failure(let e):
                throw NetlinkError.system(call: "receive reply to \(request.operation)", namespace: label, errno: e)
            }
            let messages: [NetlinkMessage]
            do {
                messages = try NetlinkMessage.split(buffer[0..<received])
            } catch {
                throw NetlinkError.malformedReply(operation: request.operation, namespace: label, detail: "\(error)")
            }
            for message in messages where message.sequence == seq {
                switch Int32(message.type) {
                case NLMSG_ERROR, NLMSG_DONE:
                    // Both start with an int: 0 for an ack or a clean end of dump, else -errno.
                    let code = (try? message.payload.loadInteger(Int32.self, at: 0)) ?? 0
                    if code == 0 { return replies }
                    let e = Errno(rawValue: code == Int32.min ? EINVAL : -code)
                    throw NetlinkError.kernel(operation: request.operation, namespace: label, errno: e,
                                              kernelMessage: Self.extendedAckMessage(message), hint: request.hints[e])
                case NLMSG_NOOP, NLMSG_OVERRUN:
                    continue
                default:
                    replies.append(message)
                }
            }
        }
    }

    /// NLMSGERR_ATTR_MSG from an error reply, if the kernel attached one (NLM_F_ACK_TLVS).
    static func extendedAckMessage(_ message: NetlinkMessage) -> String? {
        guard message.type == UInt16(NLMSG_ERROR), message.flags & UInt16(NLM_F_ACK_TLVS) != 0 else { return nil }
        // Payload: int error, then the offending request's header (whole request unless NLM_F_CAPPED).
        var offset = 4 + NetlinkMessage.headerSize
        if message.flags & UInt16(NLM_F_CAPPED) == 0 {
            guard let requestLength = try? message.payload.loadInteger(UInt32.self, at: 4) else { return nil }
            offset = 4 + netlinkAlign(Int(requestLength))
        }
        guard offset <= message.payload.count,
              let attributes = try? NetlinkAttribute.parseList(message.payload.dropFirst(offset)),
              let text = attributes.first(UInt16(NLMSGERR_ATTR_MSG.rawValue)) else { return nil }
        return try? text.string()
    }
}
