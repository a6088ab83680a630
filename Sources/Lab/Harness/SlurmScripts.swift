import Foundation

/// The Slurm side of a plan (`intnw-lab experiment NAME --plan-only --slurm`): a job array with one task
/// per trial spec, a merge job that runs after the array has ended (however its tasks ended: the merge
/// reports failed and missing trials), and `submit.sh` that submits both.
public struct SlurmScripts: Sendable {
    /// Absolute paths as the compute nodes see them (a shared file system).
    public var lab: String
    public var planDirectory: String
    public var resultsDirectory: String
    public var mergedDirectory: String
    public var experiment: String
    public var trials: Int
    /// Longest trial's apps, seconds: the task time limit adds bring-up, tear-down and margin.
    public var longestTrialSeconds: Double
    public var cpusPerTask = 2
    public var partition: String?
    /// At most this many array tasks at once (nil: as many as Slurm allows).
    public var maxParallel: Int?

    public init(lab: String, planDirectory: String, resultsDirectory: String, mergedDirectory: String,
                experiment: String, trials: Int, longestTrialSeconds: Double) {
        self.lab = lab
        self.planDirectory = planDirectory
        self.resultsDirectory = resultsDirectory
        self.mergedDirectory = mergedDirectory
        self.experiment = experiment
        self.trials = trials
        self.longestTrialSeconds = longestTrialSeconds
    }

    /// Task time limit in minutes: the apps' time, 2 minutes for bring-up/tear-down, and half again.
    public var taskMinutes: Int { Int(((longestTrialSeconds + 120) * 1.5 / 60).rounded(.up)) }

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    var header: String {
        var h = ""
        if let partition { h += "#SBATCH --partition=\(partition)\n" }
        return h
    }

    public var trialsScript: String {
        """
        #!/bin/bash
        # One array task per trial spec of the \(experiment) plan in \(planDirectory).
        # Each task needs root (network namespaces, TUN) and the built binaries at $LAB's directory.
        #SBATCH --job-name=intnw-\(experiment)
        #SBATCH --array=1-\(trials)\(maxParallel.map { "%\($0)" } ?? "")
        #SBATCH --ntasks=1
        #SBATCH --cpus-per-task=\(cpusPerTask)
        #SBATCH --time=\(taskMinutes)
        #SBATCH --output=\(resultsDirectory)/logs/%x-%A_%a.out
        \(header)set -euo pipefail
        LAB=${INTNW_LAB:-\(Self.quote(lab))}
        PLAN=\(Self.quote(planDirectory))
        RESULTS=${INTNW_RESULTS:-\(Self.quote(resultsDirectory))}
        SPEC=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$PLAN/\(TrialPlanner.listFile)")
        [ -n "$SPEC" ] || { echo "no spec for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1; }
        ID=$(basename "$SPEC" .json)
        echo "trial $ID on $(hostname), array task $SLURM_ARRAY_TASK_ID"
        exec "$LAB" trial run "$SPEC" --out "$RESULTS/$ID"

        """
    }

    public var mergeScript: String {
        """
        #!/bin/bash
        # Merges whatever the \(experiment) job array left in the results directory; trials that failed
        # or are missing are listed in the verdict (exit status 1 when any is).
        #SBATCH --job-name=intnw-\(experiment)-merge
        #SBATCH --ntasks=1
        #SBATCH --cpus-per-task=1
        #SBATCH --time=30
        #SBATCH --output=\(resultsDirectory)/logs/%x-%j.out
        \(header)set -euo pipefail
        LAB=${INTNW_LAB:-\(Self.quote(lab))}
        RESULTS=${INTNW_RESULTS:-\(Self.quote(resultsDirectory))}
        MERGED=${INTNW_MERGED:-\(Self.quote(mergedDirectory))}
        exec "$LAB" analyze --merge "$RESULTS" --out "$MERGED"

        """
    }

    public var submitScript: String {
        """
        #!/bin/bash
        # Submits the trials as a job array and the merge as a job that waits for the whole array.
        # Extra arguments go to the array's sbatch (e.g. --partition=lab).
        set -euo pipefail
        cd "$(dirname "$0")"
        mkdir -p \(Self.quote(resultsDirectory))/logs
        array=$(sbatch --parsable trials.sbatch "$@")
        array=${array%%;*}
        merge=$(sbatch --parsable --dependency=afterany:"$array" merge.sbatch)
        merge=${merge%%;*}
        echo "trials: job array $array (\(trials) tasks); merge: job $merge -> \(mergedDirectory)"

        """
    }

    /// Writes `slurm/trials.sbatch`, `slurm/merge.sbatch` and `slurm/submit.sh` into the plan directory.
    public func write() throws -> [String] {
        let dir = "\(planDirectory)/slurm"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var written: [String] = []
        for (name, text) in [("trials.sbatch", trialsScript), ("merge.sbatch", mergeScript), ("submit.sh", submitScript)] {
            let path = "\(dir)/\(name)"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
            written.append(path)
        }
        return written
    }
}
