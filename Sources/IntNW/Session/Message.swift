/// What the application gets back from a multisocket: received messages and the close report.

/// A message as the application receives it.
public struct Message: Sendable, Equatable {
    public var id: IROBID
    public var labels: Labels
    public var bytes: [UInt8]
}

/// What `close` reports.
public struct CloseReport: Sendable, Equatable {
    /// IROBs this side sent that the peer never acknowledged.
    public var undelivered: [IROBID]
    /// Whether the close was orderly (everything acknowledged before the timeout).
    public var flushed: Bool
}
