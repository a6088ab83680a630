#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Whether this process can build namespace testbeds (root, `ip`, netns and TUN support).
///
/// Every namespace suite carries `.netnsAvailableOrRequired, .netnsRequired`: without namespaces its tests are skipped, but with
/// INTNW_REQUIRE_NETNS=1 (set by CI in `.ci/run` and by `scripts/run-tests.sh`) they run and each one
/// fails on its own `#require` -- whatever `--filter` selected, so a filtered run can never pass with
/// every namespace test skipped. INTNW_TEST_NO_NETNS=1 pretends namespaces are unavailable, to test
/// this gate on a machine that has them.
enum NetnsGate {
    static let required = ProcessInfo.processInfo.environment["INTNW_REQUIRE_NETNS"] == "1"
    static let pretendMissing = ProcessInfo.processInfo.environment["INTNW_TEST_NO_NETNS"] == "1"

    static let missing: String? = {
        if pretendMissing { return "INTNW_TEST_NO_NETNS=1" }
        if geteuid() != 0 { return "not root" }
        if access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0 && access("/usr/bin/ip", X_OK) != 0 {
            return "iproute2 'ip' not installed"
        }
        if access("/proc/self/ns/net", F_OK) != 0 { return "no network namespace support" }
        if access("/dev/net/tun", R_OK | W_OK) != 0 { return "no /dev/net/tun" }
        return nil
    }()

    static var available: Bool { missing == nil }
    /// Run the tests when they can work, or when they must (so that they fail).
    static var shouldRun: Bool { available || required }

}

extension Trait where Self == ConditionTrait {
    /// Skips a namespace suite where namespaces are unavailable, unless INTNW_REQUIRE_NETNS=1.
    static var netnsAvailableOrRequired: Self {
        .enabled(if: NetnsGate.shouldRun, "needs root, ip, network namespaces and TUN (INTNW_REQUIRE_NETNS=1 makes this a failure)")
    }
}

extension Trait where Self == NetnsRequirement {
    /// Fails each test of the suite when namespaces are unavailable (only reached when required).
    static var netnsRequired: Self { NetnsRequirement() }
}

/// Wraps every test of a namespace suite: `#require`s the namespace capability before the body runs.
/// Catches: a namespace test reported as passed (or skipped) under INTNW_REQUIRE_NETNS=1 on a machine
/// where it cannot run.
struct NetnsRequirement: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // The suite itself is scoped too (testCase nil); the check belongs to each test.
        if testCase != nil || !test.isSuite {
            try #require(NetnsGate.missing == nil, "namespace test cannot run: \(NetnsGate.missing ?? "")")
        }
        try await function()
    }
}

@Suite struct NetnsGateTests {
    @Test("namespace tests can run when CI requires them")
    func requirement() throws {
        if NetnsGate.required {
            try #require(NetnsGate.missing == nil, "INTNW_REQUIRE_NETNS=1 but namespace tests cannot run: \(NetnsGate.missing ?? "")")
        } else if let why = NetnsGate.missing {
            print("namespace tests skipped: \(why) (set INTNW_REQUIRE_NETNS=1 to make this an error)")
        }
    }
}

import Emulation
import Logging

/// Brings a testbed up, runs `body`, and always tears it down (also when `body` throws).
func withTestbed(_ config: Testbed.Configuration, _ body: (Testbed) async throws -> Void) async throws {
    var logger = Logger(label: "test.\(config.prefix)")
    logger.logLevel = .warning
    try await Testbed.with(config, logger: logger, body)
}
