/// The accounting invariant: what the apps sent over an interface is part of what was captured
/// there, in every time bin. App bytes are booked at the first capture of each byte, interface
/// bytes at the capture of each packet (retransmissions included), so app ≤ interface holds bin by
/// bin unless the accounting is wrong.
public enum Accounting {
    /// One line per bin and direction in which the apps' bytes exceed the interface's.
    public static func check(interface: String, appsUplink: [UInt64], appsDownlink: [UInt64],
                             uplink: [UInt64], downlink: [UInt64], binWidth: UInt64) -> [String] {
        var out: [String] = []
        for (dir, apps, wire) in [("uplink", appsUplink, uplink), ("downlink", appsDownlink, downlink)] {
            for (i, a) in apps.enumerated() {
                let w = i < wire.count ? wire[i] : 0
                if a > w {
                    out.append("accounting invariant violated on \(interface) \(dir), bin \(i) (from \(Double(UInt64(i) * binWidth) / 1e9) s): apps \(a) B > interface \(w) B")
                }
            }
        }
        return out
    }
}
