#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Whether the running kernel can run netem, decided at run time.
public struct NetemSupport: Sendable, Equatable {
    /// True when a netem qdisc can be created.
    public var available: Bool
    /// One line saying how this was decided, e.g. "creating a netem qdisc in a scratch network
    /// namespace failed: No such file or directory [kernel: Specified qdisc kind is unknown]".
    public var explanation: String

    public init(available: Bool, explanation: String) {
        self.available = available
        self.explanation = explanation
    }

    /// Tries it: in a new anonymous network namespace (which has only `lo` and disappears with its
    /// socket, so nothing outside it changes and nothing is left behind) it creates a netem root
    /// qdisc on `lo`. ENOENT/EOPNOTSUPP means the kernel has no sch_netem (a modular one gets
    /// auto-loaded by that request). Without the privilege to create a namespace it falls back to
    /// static evidence: /sys/module/sch_netem, the module file, /boot/config-RELEASE.
    public static func probe() -> NetemSupport {
        do {
            return try NetlinkNamespace.scratch.run {
                let socket = try NetlinkSocket(openingHere: .scratch)
                guard let reply = try socket.query(RouteMessages.getLink(name: "lo")).first else {
                    throw NetlinkError.malformedReply(operation: "RTM_GETLINK lo", namespace: "scratch namespace", detail: "no reply")
                }
                let lo = try LinkInfo(message: reply).index
                let options = NetemOptions(DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 0), seed: 1)
                do {
                    try socket.perform(RouteMessages.replaceNetem(index: lo, interface: "lo", options: options))
                    return NetemSupport(available: true, explanation: "a netem qdisc could be created in a scratch network namespace")
                } catch let NetlinkError.kernel(_, _, code, kernelMessage, _) where code == .noSuchFileOrDirectory || code == .notSupported {
                    var line = "creating a netem qdisc in a scratch network namespace failed: \(code)"
                    if let kernelMessage, !kernelMessage.isEmpty { line += " [kernel: \(kernelMessage)]" }
                    return NetemSupport(available: false, explanation: line)
                }
            }
        } catch {
            return staticEvidence(why: "could not test in a scratch namespace (\(error))")
        }
    }

    /// Decision from files alone, when the kernel cannot be asked.
    static func staticEvidence(why: String) -> NetemSupport {
        let release = kernelRelease()
        let moduleFiles = ["", ".xz", ".zst", ".gz"].map { "/lib/modules/\(release)/kernel/net/sched/sch_netem.ko\($0)" }
        if access("/sys/module/sch_netem", F_OK) == 0 {
            return NetemSupport(available: true, explanation: "\(why); /sys/module/sch_netem exists")
        }
        if let file = moduleFiles.first(where: { access($0, F_OK) == 0 }) {
            return NetemSupport(available: true, explanation: "\(why); module \(file) exists")
        }
        if let config = readSmallFile("/boot/config-\(release)"), let built = kernelConfigHasNetem(config) {
            return NetemSupport(available: built, explanation: "\(why); /boot/config-\(release) has "
                                + (built ? "CONFIG_NET_SCH_NETEM" : "CONFIG_NET_SCH_NETEM not set"))
        }
        return NetemSupport(available: false, explanation: "\(why); no sch_netem module or config entry found")
    }

    /// Reads CONFIG_NET_SCH_NETEM from kernel config text: true for `=y`/`=m`, false for "is not
    /// set", nil when the text does not mention it.
    public static func kernelConfigHasNetem(_ config: String) -> Bool? {
        for line in config.split(whereSeparator: \.isNewline) {
            let l = line.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            if l == "CONFIG_NET_SCH_NETEM=y" || l == "CONFIG_NET_SCH_NETEM=m" { return true }
            if l == "# CONFIG_NET_SCH_NETEM is not set" || l == "CONFIG_NET_SCH_NETEM=n" { return false }
        }
        return nil
    }

    static func kernelRelease() -> String {
        var names = utsname()
        guard uname(&names) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &names.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What `--shaper` asked for.
public enum ShaperRequest: String, Sendable, CaseIterable {
    /// netem when the kernel has sch_netem, else userspace.
    case auto
    case netem
    case userspace
}

/// `--shaper netem` on a kernel without sch_netem.
public struct NetemUnavailableError: Error, Equatable, CustomStringConvertible {
    public var support: NetemSupport
    public var description: String {
        "netem requested but this kernel has no sch_netem (\(support.explanation)); use --shaper userspace or auto"
    }
}

/// The backend a run uses, and why.
public struct ShaperSelection: Sendable, Equatable {
    public var kind: ShaperKind
    /// One line for the run log, e.g. "shaper: userspace (auto: this kernel has no sch_netem: ...)".
    public var reason: String

    /// Decides the backend. `probe` runs only when the answer depends on it (auto and netem).
    public static func choose(requested: ShaperRequest,
                              probe: () -> NetemSupport = NetemSupport.probe) throws -> ShaperSelection {
        switch requested {
        case .userspace:
            return ShaperSelection(kind: .userspace, reason: "shaper: userspace (requested)")
        case .netem:
            let support = probe()
            guard support.available else { throw NetemUnavailableError(support: support) }
            return ShaperSelection(kind: .netem, reason: "shaper: netem (requested; \(support.explanation))")
        case .auto:
            let support = probe()
            return support.available
                ? ShaperSelection(kind: .netem, reason: "shaper: netem (auto: \(support.explanation))")
                : ShaperSelection(kind: .userspace, reason: "shaper: userspace (auto: this kernel has no sch_netem: \(support.explanation))")
        }
    }

    /// The backend kind alone; see `choose` for the reason line.
    public static func resolve(requested: ShaperRequest,
                               probe: () -> NetemSupport = NetemSupport.probe) throws -> ShaperKind {
        try choose(requested: requested, probe: probe).kind
    }
}
