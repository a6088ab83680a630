import Foundation
import Testing
@testable import Emulation

/// The repository root, found from this file's path (Tests/EmulationTests/<file>).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite struct TraceGeneratorTests {
    @Test func sameSeedSameBytesDifferentSeedDifferentTrace() throws {
        for style in [TraceStyle.annarbor, .ypsilanti, .cellularOnly] {
            let a = try TraceGenerator.text(style: style, seed: 7, durationSeconds: 300)
            let b = try TraceGenerator.text(style: style, seed: 7, durationSeconds: 300)
            let c = try TraceGenerator.text(style: style, seed: 8, durationSeconds: 300)
            #expect(a == b)
            #expect(a != c)
            // What the generator writes is a valid trace that reads back to the generated one.
            var parsed = try TraceParser.parse(a, source: "x")
            let generated = try TraceGenerator.generate(style: style, seed: 7, durationSeconds: 300)
            parsed.source = generated.source
            #expect(parsed == generated)
        }
    }

    @Test func shorterTraceIsAPrefixOfALongerOne() throws {
        let short = try TraceGenerator.generate(style: .annarbor, seed: 3, durationSeconds: 600)
        let long = try TraceGenerator.generate(style: .annarbor, seed: 3, durationSeconds: 900)
        #expect(short.slices.count == 600)
        #expect(Array(long.slices.prefix(600)) == short.slices)
    }

    @Test func slicesAreOneSecondAndTheLastEndsAtTheDuration() throws {
        let t = try TraceGenerator.generate(style: .ypsilanti, seed: 1, durationSeconds: 10.5)
        #expect(t.slices.map(\.startSeconds) == (0...10).map(Double.init))
        #expect(t.durationSeconds == 10.5)
        #expect(t.source == "intnw-lab trace generate --style ypsilanti --seed 1 --duration 10.5")
    }

    @Test func rejectsBadDurations() {
        for d in [0, -1, .nan, .infinity, TraceGenerator.maxDurationSeconds + 1] {
            #expect(throws: TraceGeneratorError.self) { try TraceGenerator.generate(style: .annarbor, seed: 1, durationSeconds: d) }
        }
    }

    @Test func constantStyleIsTheLabTrace() throws {
        let t = try TraceGenerator.generate(style: .constant, seed: 99, durationSeconds: 120)
        #expect(t.slices.count == 1)
        #expect(t.durationSeconds == 120)
        #expect(t.slices[0].conditions == [
            LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 20),
            LinkConditions(downBytesPerSecond: 125_000, upBytesPerSecond: 62_500, rttMilliseconds: 100),
        ])
        #expect(try TraceGenerator.text(style: .constant, seed: 1, durationSeconds: 120)
            == TraceGenerator.text(style: .constant, seed: 2, durationSeconds: 120))
    }

    @Test func cellularOnlyHasNoWiFiAndTheAnnArborCellularModel() throws {
        let only = try TraceGenerator.generate(style: .cellularOnly, seed: 5, durationSeconds: 600)
        let aa = try TraceGenerator.generate(style: .annarbor, seed: 5, durationSeconds: 600)
        #expect(only.slices.allSatisfy { !only.isAvailable(link: 0, in: $0) })
        #expect(only.slices.map { $0.conditions[1] } == aa.slices.map { $0.conditions[1] })
    }

    /// The documented ranges (traces/README.md) hold for an hour of every style over several seeds.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func statisticsFallInTheDocumentedRanges(seed: UInt64) throws {
        let aa = try TraceGenerator.generate(style: .annarbor, seed: seed, durationSeconds: 3600)
        let yp = try TraceGenerator.generate(style: .ypsilanti, seed: seed, durationSeconds: 3600)
        let aaStats = TraceStats(trace: aa), ypStats = TraceStats(trace: yp)

        let aaWiFi = aaStats.links[0], ypWiFi = ypStats.links[0]
        #expect((0.20...0.55).contains(aaWiFi.availableFraction), "Ann Arbor WiFi \(aaWiFi.availableFraction)")
        #expect((0.03...0.25).contains(ypWiFi.availableFraction), "Ypsilanti WiFi \(ypWiFi.availableFraction)")
        #expect(ypWiFi.availableFraction < aaWiFi.availableFraction)

        for (model, stats, trace) in [(VehicularModel.annArbor, aaStats, aa), (.ypsilanti, ypStats, yp)] {
            let wifi = stats.links[0], cell = stats.links[1]
            // Encounters of seconds to a few minutes (runs cut by the trace's end may be shorter).
            let encounters = try #require(wifi.encounters)
            #expect(encounters.count >= 5)
            #expect(encounters.maxSeconds <= Double(model.encounterRangeSeconds.upperBound))
            #expect((5...120).contains(encounters.medianSeconds))
            let gaps = try #require(wifi.disconnections)
            #expect(gaps.maxSeconds <= Double(model.disconnectionRangeSeconds.upperBound))

            // WiFi RTT mostly 25-70 ms, spikes into the hundreds.
            let rtt = try #require(wifi.rttMilliseconds)
            #expect((25...70).contains(rtt.p50), "WiFi RTT p50 \(rtt.p50)")
            #expect(rtt.p5 >= 25)
            let wifiRTTs = trace.slices.filter { trace.isAvailable(link: 0, in: $0) }.map { $0.conditions[0].rttMilliseconds }
            let inBand = Double(wifiRTTs.filter { (25...70).contains($0) }.count) / Double(wifiRTTs.count)
            #expect(inBand >= 0.6, "only \(inBand) of WiFi time at 25-70 ms")
            #expect(wifiRTTs.contains { $0 >= 100 && $0 < 1000 })

            // WiFi hundreds of kB/s to a few MB/s; 3G tens to ~100 kB/s down, less up; 3G RTT ~200 ms and up.
            let down = try #require(wifi.downBytesPerSecond)
            #expect((200_000...3_000_000).contains(down.p50), "WiFi down p50 \(down.p50)")
            #expect(down.p95 <= 4_000_000)
            let cellDown = try #require(cell.downBytesPerSecond), cellUp = try #require(cell.upBytesPerSecond)
            #expect((30_000...100_000).contains(cellDown.p50))
            #expect(cellDown.p95 <= 150_000)
            #expect(cellUp.p50 < cellDown.p50)
            let cellRTT = try #require(cell.rttMilliseconds)
            #expect(cellRTT.p5 >= 180)
            #expect((190...300).contains(cellRTT.p50), "3G RTT p50 \(cellRTT.p50)")
        }
        // Occasionally over one second: an hour of Ann Arbor-style WiFi has some.
        #expect(aa.slices.contains { aa.isAvailable(link: 0, in: $0) && $0.conditions[0].rttMilliseconds >= 1000 })
    }

    @Test func deterministicMathMatchesTheCLibrary() {
        var rng = DeterministicRNG(seed: 11)
        for _ in 0..<20_000 {
            let x = DeterministicMath.exp(rng.uniform(-40, 40))
            let l = DeterministicMath.log(x)
            #expect(abs(l - Foundation.log(x)) <= 1e-14 * max(1, abs(l)))
            let y = rng.uniform(-700, 700)
            #expect(abs(DeterministicMath.exp(y) - Foundation.exp(y)) <= 1e-14 * Foundation.exp(y))
        }
        #expect(DeterministicMath.log(1) == 0)
        #expect(DeterministicMath.exp(0) == 1)
        #expect(DeterministicMath.log(0) == -.infinity)
        #expect(DeterministicMath.log(-1).isNaN)
        #expect(DeterministicMath.exp(1000) == .infinity)
        #expect(DeterministicMath.exp(-1000) == 0)
        #expect(DeterministicMath.exp(-740) > 0)
    }

    @Test func randomStreamIsTheReferenceSplitMix64() {
        // First outputs of SplitMix64 seeded with 0 (the published reference values).
        var rng = DeterministicRNG(seed: 0)
        #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
        #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(rng.next() == 0x06C4_5D18_8009_454F)
    }

    // MARK: shipped traces and their README

    /// Every `trace generate ... --output traces/X` command in traces/README.md regenerates its file
    /// byte for byte, and every shipped trace is covered by one.
    @Test func shippedTracesRegenerateFromTheirDocumentedCommands() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("traces/README.md"), encoding: .utf8)
        var covered: Set<String> = []
        for line in readme.split(separator: "\n") where line.hasPrefix("intnw-lab trace generate ") {
            let words = line.split(separator: " ").map(String.init)
            func option(_ name: String) -> String? {
                words.firstIndex(of: name).flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil }
            }
            let style = try #require(option("--style").flatMap(TraceStyle.init(rawValue:)), "\(line)")
            let seed = try #require(UInt64(option("--seed") ?? "1"), "\(line)")
            let duration = try #require(option("--duration").flatMap(Double.init), "\(line)")
            let output = try #require(option("--output"), "\(line)")
            let shipped = try Data(contentsOf: repositoryRoot.appendingPathComponent(output))
            let regenerated = try TraceGenerator.text(style: style, seed: seed, durationSeconds: duration)
            #expect(shipped == Data(regenerated.utf8), "\(output) differs from: \(line)")
            covered.insert(output)
        }
        #expect(covered == ["traces/annarbor.trace", "traces/ypsilanti.trace", "traces/cellular-only.trace", "traces/lab-constant.trace"])
    }

    /// The statistics printed in traces/README.md are exactly what `trace show` prints today.
    @Test func readmeStatisticsMatchTheShippedTraces() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("traces/README.md"), encoding: .utf8)
        for name in ["annarbor", "ypsilanti", "cellular-only", "lab-constant"] {
            let relative = "traces/\(name).trace"
            let trace = try TraceParser.parse(contentsOfFile: repositoryRoot.appendingPathComponent(relative).path)
            let block = "```\n" + TraceStats(trace: trace).render(name: relative) + "```\n"
            if !readme.contains(block) {
                Issue.record("traces/README.md lacks the current `intnw-lab trace show \(relative)` output:\n\(block)")
            }
        }
    }

    /// The README's numbers computed a second way, straight from the slices (the test above only
    /// compares two renderings of the same `TraceStats`). Catches a `TraceStats` that counts unavailable
    /// WiFi time, mixes up directions or links, or miscounts encounters -- with the README regenerated to
    /// match. Percentiles: the README value must lie within one rank of the p-quantile of the values
    /// per second of (available) time, whatever the interpolation.
    @Test func readmeStatisticsAgreeWithAnIndependentComputation() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("traces/README.md"), encoding: .utf8)
        for name in ["annarbor", "ypsilanti", "cellular-only"] {
            let relative = "traces/\(name).trace"
            let trace = try TraceParser.parse(contentsOfFile: repositoryRoot.appendingPathComponent(relative).path)
            let start = try #require(readme.range(of: "trace \(relative)\n"))
            let block = readme[start.upperBound...].prefix { $0 != "`" }
            let lines = block.split(separator: "\n").map(String.init)
            // Per second of trace: is WiFi up, and each link's values.
            var wifiUp: [Bool] = []
            var values: [String: [Double]] = [:]
            for (i, slice) in trace.slices.enumerated() {
                let seconds = Int((trace.endSeconds(ofSlice: i) - slice.startSeconds).rounded())
                for _ in 0..<seconds {
                    let up = trace.isAvailable(link: 0, in: slice)
                    wifiUp.append(up)
                    for (l, c) in slice.conditions.enumerated() where l == 1 || up {
                        let link = l == 0 ? "wifi" : "cellular"
                        values["\(link) down", default: []].append(c.downBytesPerSecond)
                        values["\(link) up", default: []].append(c.upBytesPerSecond)
                        values["\(link) rtt", default: []].append(c.rttMilliseconds)
                    }
                }
            }
            #expect(Double(wifiUp.count) == trace.durationSeconds)
            let fraction = Double(wifiUp.filter { $0 }.count) / Double(wifiUp.count) * 100
            #expect(lines.contains(String(format: "wifi: available %.1f%% of the time", fraction)), "\(relative): \(fraction)%")
            // Runs of WiFi up / down.
            var runs: [(up: Bool, length: Int)] = []
            for u in wifiUp { if runs.last?.up == u { runs[runs.count - 1].length += 1 } else { runs.append((u, 1)) } }
            let encounters = runs.filter(\.up).map(\.length), gaps = runs.filter { !$0.up }.map(\.length)
            let encounterLine = lines.first { $0.hasPrefix("  encounters") } ?? ""
            if encounters.isEmpty {
                #expect(encounterLine.hasSuffix("none"), "\(relative): \(encounterLine)")
            } else {
                #expect(encounterLine.hasPrefix("  encounters     \(encounters.count), min \(encounters.min()!) s,")
                        && encounterLine.hasSuffix("max \(encounters.max()!) s"), "\(relative): \(encounterLine)")
            }
            let gapLine = lines.first { $0.hasPrefix("  disconnections") } ?? ""
            #expect(gapLine.hasPrefix("  disconnections \(gaps.count), min \(gaps.min()!) s,") && gapLine.hasSuffix("max \(gaps.max()!) s"),
                    "\(relative): \(gapLine)")
            // Percentile rows: "wifi      down B/s  164150  609477  1397418".
            for (key, sample) in values {
                let parts = key.split(separator: " ")
                let quantity = parts[1] == "rtt" ? "rtt ms" : "\(parts[1]) B/s"
                let row = try #require(lines.first { $0.hasPrefix(String(parts[0])) && $0.contains(quantity) }, "\(relative): no row \(key)")
                let numbers = row.split(separator: " ").compactMap { Double($0) }
                try #require(numbers.count == 3, "\(relative): \(row)")
                let sorted = sample.sorted()
                for (p, shown) in zip([0.05, 0.5, 0.95], numbers) {
                    let k = p * Double(sorted.count - 1)
                    let lo = sorted[max(0, Int(k.rounded(.down)) - 1)], hi = sorted[min(sorted.count - 1, Int(k.rounded(.up)) + 1)]
                    #expect(shown >= lo.rounded(.down) && shown <= hi.rounded(.up), "\(relative) \(key) p\(Int(p * 100)): README \(shown), slices say \(lo)...\(hi)")
                }
            }
        }
    }

    @Test func shippedTracesAreLongEnoughAndValid() throws {
        for (name, minimum) in [("annarbor", 600.0), ("ypsilanti", 600), ("cellular-only", 600), ("lab-constant", 120)] {
            let trace = try TraceParser.parse(contentsOfFile: repositoryRoot.appendingPathComponent("traces/\(name).trace").path)
            #expect(trace.durationSeconds >= minimum)
        }
    }
}
