import ToyProtocol
import Testing
@testable import ToyApps

@Suite("Argument validation")
struct ValidationTests {
    func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return (error as? ToyAppError)?.description ?? "unexpected error type: \(error)"
        }
    }

    @Test("sizes below the 24-byte header or above the protocol limit are refused with the option's name")
    func sizes() {
        #expect(message { try FGClientSettings(appID: 1, requestBytes: 23).validate() }?.hasPrefix("--request-bytes must be between 24") == true)
        #expect(message { try FGClientSettings(appID: 1, requestBytes: 24).validate() } == nil)
        #expect(message { try BGClientSettings(appID: 1, chunkBytes: (64 << 20) + 25).validate() }?.hasPrefix("--chunk-bytes") == true)
        #expect(message { try ServerSettings(port: 1, replyBytes: 0).validate() }?.hasPrefix("--reply-bytes") == true)
    }

    @Test("interval, depth and address are range-checked")
    func ranges() {
        #expect(message { try FGClientSettings(appID: 1, intervalSeconds: 0).validate() }?.contains("--interval") == true)
        #expect(message { try FGClientSettings(appID: 1, intervalSeconds: .nan).validate() }?.contains("--interval") == true)
        #expect(message { try FGClientSettings(appID: 1, intervalSeconds: 0.01).validate() } == nil)
        #expect(message { try BGClientSettings(appID: 1, depth: 0).validate() }?.contains("--depth") == true)
        #expect(message { try ServerSettings(address: "localhost", port: 1).validate() }?.contains("--address") == true)
    }

    @Test("two apps with one id in a process are refused")
    func duplicateIDs() {
        let c = ClientSessionConfiguration(host: "198.19.0.1", port: 5000,
                                           connections: [[.fg(FGClientSettings(appID: 4))], [.bg(BGClientSettings(appID: 4))]])
        #expect(message { try c.validate() }?.contains("app id 4 is used twice") == true)
        let ok = ClientSessionConfiguration(host: "198.19.0.1", port: 5000,
                                            connections: [[.fg(FGClientSettings(appID: 4)), .bg(BGClientSettings(appID: 5))]])
        #expect(message { try ok.validate() } == nil)
    }

    @Test("variants have distinct default ports")
    func ports() {
        #expect(ToyVariant.plain.defaultPort == 5000)
        #expect(ToyVariant.intnw.defaultPort == 5001)
    }
}
