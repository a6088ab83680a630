/// Names and addresses of the two-namespace testbed (docs/testbed.md, Topology).
///
/// Everything lives in 198.18.0.0/15 (RFC 2544 benchmarking space). A `prefix` keeps two testbeds
/// apart: namespaces are `<prefix>-client` and `<prefix>-server`.
public struct TopologySpec: Sendable, Equatable {
    public struct Link: Sendable, Equatable {
        /// Link name as used in traces ("wifi", "cellular").
        public var name: String
        public var kind: LinkKind
        /// Interface name in both namespaces (the same name on both sides).
        public var interface: String
        /// Client address (no prefix length), e.g. 198.18.1.2.
        public var clientAddress: String
        /// Server-side address of this link, e.g. 198.18.1.1.
        public var serverAddress: String
        /// Prefix length of the link subnet.
        public var prefixLength: Int
        /// Policy-routing table id for traffic sourced from `clientAddress`.
        public var routingTable: Int
        /// Metric of this link's default route in the client's main table (lower wins).
        public var defaultRouteMetric: Int
    }

    public var prefix: String
    public var links: [Link]
    /// The server's service address, on its loopback, reachable over every link.
    public var serviceAddress: String

    public var clientNamespace: String { "\(prefix)-client" }
    public var serverNamespace: String { "\(prefix)-server" }

    /// The standard WiFi + cellular topology.
    public init(prefix: String = "intnw") {
        self.prefix = prefix
        self.serviceAddress = "198.19.0.1"
        self.links = [
            Link(name: "wifi", kind: .wifi, interface: "wifi0", clientAddress: "198.18.1.2",
                 serverAddress: "198.18.1.1", prefixLength: 24, routingTable: 101, defaultRouteMetric: 100),
            Link(name: "cellular", kind: .cellular, interface: "cell0", clientAddress: "198.18.2.2",
                 serverAddress: "198.18.2.1", prefixLength: 24, routingTable: 102, defaultRouteMetric: 200),
        ]
    }

    public func link(named name: String) -> Link? { links.first { $0.name == name } }

    /// Prefixes are used in namespace and shared-memory names: keep them short and shell-safe.
    public static func isValidPrefix(_ p: String) -> Bool {
        !p.isEmpty && p.count <= 8 && p.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
            && p.first!.isLetter
    }
}
