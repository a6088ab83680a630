/// Fixtures and helpers shared by the test targets (and nothing in production): a seeded IntNW
/// message workload with its receiver-side check. The seeded generator is `DeterministicRNG`
/// (re-exported here), the project's one SplitMix64.
@_exported import DeterministicRandom
import IntNW

/// A deterministic workload: message i has random size, labels and dependencies.
public struct Workload {
    public struct Item {
        public var bytes: [UInt8]
        public var labels: Labels
        public var deps: Dependencies
    }
    public var items: [Item] = []
    /// Id the first message will get (dependencies point inside the batch).
    public let firstID: UInt64

    public init(count: Int, maxBytes: Int, seed: UInt64, firstID: UInt64 = 1) {
        self.firstID = firstID
        var rng = DeterministicRNG(seed: seed)
        for i in 0..<count {
            let size = 1 + Int(rng.next() % UInt64(maxBytes))
            var bytes = [UInt8](repeating: 0, count: size)
            var x = rng.next()
            for j in 0..<size {
                if j % 8 == 0 { x = rng.next() }
                bytes[j] = UInt8(truncatingIfNeeded: x >> (8 * UInt64(j % 8)))
            }
            let labelChoices: [Labels] = [.foreground | .small, .background | .large, .foreground, .background,
                                          .foreground | .wifiPreferred, .background | .large | .wifiPreferred]
            let labels = labelChoices[Int(rng.next() % UInt64(labelChoices.count))]
            let deps: Dependencies
            switch rng.next() % 4 {
            case 0: deps = .allEarlier
            case 1: deps = .none
            default:
                deps = i == 0 ? .none : .on((0..<(1 + rng.next() % 3)).map { _ in IROBID(firstID + rng.next() % UInt64(i)) })
            }
            items.append(Item(bytes: bytes, labels: labels, deps: deps))
        }
    }

    /// Checks what a receiver got: each IROB exactly once, byte-identical, labels intact,
    /// released after all its dependencies. Returns problems found (empty = all good).
    public func verify(_ received: [Message]) -> [String] {
        var problems: [String] = []
        var position: [UInt64: Int] = [:]
        for (i, m) in received.enumerated() {
            if position[m.id.rawValue] != nil { problems.append("\(m.id) received twice") }
            position[m.id.rawValue] = i
            let idx = Int(m.id.rawValue - firstID)
            guard idx >= 0 && idx < items.count else {
                problems.append("unexpected \(m.id)")
                continue
            }
            if m.bytes != items[idx].bytes { problems.append("\(m.id) bytes differ") }
            if m.labels != items[idx].labels { problems.append("\(m.id) labels differ") }
        }
        if received.count != items.count { problems.append("received \(received.count) of \(items.count)") }
        for (idx, item) in items.enumerated() {
            let id = firstID + UInt64(idx)
            guard let mine = position[id] else {
                problems.append("irob#\(id) missing")
                continue
            }
            let deps: [UInt64]
            switch item.deps {
            case .allEarlier: deps = Array(firstID..<id)
            case .none: deps = []
            case .on(let ds): deps = ds.map(\.rawValue)
            }
            for d in deps where (position[d] ?? Int.max) > mine { problems.append("irob#\(id) released before its dependency irob#\(d)") }
        }
        return problems
    }
}
