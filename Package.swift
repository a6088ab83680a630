// swift-tools-version: 6.2
import PackageDescription

// Module map (dependencies run one way; docs/architecture.md has the full map):
//   intnw-lab -> Lab -> Analysis, Capture, Emulation, IntNW
//   intnw-app -> ToyApps -> IntNW, ToyProtocol
//   IntNW -> IntNWWire, LinuxSupport;  Analysis -> IntNWWire (never all of IntNW)
// IntNW never imports testbed code: it must work on a real laptop with no testbed around.

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
]
/// Modules already checked by the Swift 6 compiler (data-race safety); the rest follow module by module.
let swift6: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "IntNWLab",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "IntNW", targets: ["IntNW"]),
        .executable(name: "intnw-lab", targets: ["intnw-lab"]),
        .executable(name: "intnw-app", targets: ["intnw-app"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.0"),
        // X25519 + HKDF + HMAC for IntNW's authenticated attach (docs/wire-protocol.md).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C glue Swift cannot import directly: setns, TUN ioctls, full struct tcp_info, SIOCOUTQ.
        .target(name: "CShims"),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),

        // The Linux entry points every module shares: errno as swift-system's `Errno`, one EINTR
        // retry helper, network-namespace entry (the only setns), and the one IPv4 endpoint type.
        .target(
            name: "LinuxSupport",
            dependencies: ["CShims", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: swift6),
        // The one seeded random generator (SplitMix64) and libm-free log/exp: identical results on
        // every machine (traces, synthetic captures, randomized tests).
        .target(name: "DeterministicRandom", swiftSettings: swift6),
        // The IntNW wire format: frames, identifiers and labels, encoder, decoder, limits and magic.
        // Pure Swift, no dependencies: IntNW speaks it, the analyzer reads captures with it.
        .target(name: "IntNWWire", swiftSettings: swift6),
        .target(
            name: "IntNW",
            dependencies: [
                "IntNWWire", "LinuxSupport", "CShims", "CMnl",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Emulation",
            dependencies: [
                "CShims", "CMnl", "DeterministicRandom", "LinuxSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Capture",
            dependencies: [
                "CPcap", "CShims", "LinuxSupport",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),
        // The toy apps' message framing, shared by intnw-app and the analyzer; no dependencies.
        .target(name: "ToyProtocol", swiftSettings: swift6),
        // The toy FG/BG apps and their server over plain TCP or IntNW (no testbed code).
        .target(
            name: "ToyApps",
            dependencies: [
                "IntNW", "LinuxSupport", "ToyProtocol",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Analysis",
            dependencies: [
                "Capture", "DeterministicRandom", "IntNWWire", "ToyProtocol",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Lab",
            dependencies: [
                "Analysis", "Capture", "Emulation", "IntNW", "LinuxSupport", "ToyProtocol", "CShims",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),
        .executableTarget(
            name: "intnw-lab",
            dependencies: [
                "Lab", "Emulation", "Analysis", "Capture", "IntNW",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .executableTarget(
            name: "intnw-app",
            dependencies: [
                "ToyApps", "IntNW", "ToyProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .executableTarget(
            name: "intnw-bench",
            dependencies: [
                "Lab", "SyntheticTraffic", "Emulation", "Analysis", "Capture", "IntNW", "LinuxSupport", "CShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swift6),

        // Test helper only (not a product): a second IntNW process for the multi-app scheduling tests.
        .executableTarget(name: "intnw-sched-probe", dependencies: ["IntNW"], path: "Tests/SchedProbe",
                          swiftSettings: swiftSettings),

        // Synthetic captures and whole synthetic runs (pcap + app logs) for the analyzer's tests and
        // its benchmark; a fixture, kept out of the Analysis module.
        .target(name: "SyntheticTraffic", dependencies: ["Analysis", "Capture", "DeterministicRandom", "IntNWWire", "ToyProtocol"],
                path: "Tests/SyntheticTraffic", swiftSettings: swiftSettings),
        // Fixtures and helpers the test targets share (a seeded IntNW workload); not a product.
        .target(name: "TestSupport", dependencies: ["IntNW", "DeterministicRandom"], path: "Tests/TestSupport",
                swiftSettings: swiftSettings),

        .testTarget(name: "EmulationTests", dependencies: ["Emulation", "CShims", "LinuxSupport", .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")], swiftSettings: swiftSettings),
        .testTarget(name: "IntNWTests", dependencies: ["IntNW", "LinuxSupport", "TestSupport", "intnw-sched-probe", .product(name: "SystemPackage", package: "swift-system")], swiftSettings: swiftSettings),
        .testTarget(name: "CaptureTests", dependencies: ["Capture"], swiftSettings: swiftSettings),
        .testTarget(name: "AnalysisTests", dependencies: ["DeterministicRandom", "SyntheticTraffic", "Analysis", "Capture", "IntNW", "ToyProtocol"], swiftSettings: swiftSettings),
        .testTarget(name: "ToyProtocolTests", dependencies: ["ToyProtocol"], swiftSettings: swiftSettings),
        .testTarget(name: "ToyAppsTests", dependencies: ["ToyApps", "ToyProtocol", "IntNW", "LinuxSupport", .product(name: "SystemPackage", package: "swift-system")], swiftSettings: swiftSettings),
        .testTarget(name: "LabTests", dependencies: ["Lab", "Analysis", "Capture", "LinuxSupport", "ToyProtocol"], swiftSettings: swiftSettings),
        // Needs root and network namespaces; INTNW_REQUIRE_NETNS=1 turns a skip into a failure.
        .testTarget(name: "NetnsTests", dependencies: ["Lab", "TestSupport", "Emulation", "IntNW", "Capture", "Analysis", "CShims", "intnw-sched-probe"], swiftSettings: swiftSettings),
    ]
)
