import Foundation
import Synchronization
import ToyProtocol

/// Whole-message byte arrays for transports that take `[UInt8]` (IntNW's `send`), reused so a
/// bulk sender does not allocate and fill a fresh 256 KB array per chunk.
///
/// The transport may keep a reference to a sent array until the peer acknowledges it; writing the
/// next header into a still-referenced array would copy it (copy-on-write, correct but slow).
/// Buffers are therefore handed out oldest-returned first, and a size keeps `depth` of them, so a
/// buffer is normally reused only after several later messages, by when its send has been
/// acknowledged.
final class MessageBufferPool: Sendable {
    /// Returned buffers by message size, oldest first.
    private let free = Mutex<[Int: [[UInt8]]]>([:])
    private let depth: Int
    /// Payload filler; the toy protocol gives payload bytes no meaning.
    static let fill: UInt8 = 0x5A

    /// - Parameter depth: buffers kept per message size.
    init(depth: Int = 8) {
        self.depth = max(1, depth)
    }

    /// A buffer holding `header` followed by `header.payloadLength` filler bytes.
    func message(for header: ToyHeader) -> [UInt8] {
        let size = header.messageLength
        let depth = self.depth
        var buffer: [UInt8] = free.withLock { free in
            guard var list = free[size], list.count >= depth else { return nil }
            let b = list.removeFirst()
            free[size] = list
            return b
        } ?? [UInt8](repeating: Self.fill, count: size)
        buffer.withUnsafeMutableBytes { header.encode(into: $0) }
        return buffer
    }

    /// Gives a buffer back after the transport accepted it.
    func recycle(_ buffer: [UInt8]) {
        let depth = self.depth
        free.withLock { free in
            var list = free[buffer.count] ?? []
            if list.count < depth + 1 { list.append(buffer) }
            free[buffer.count] = list
        }
    }
}
