#!/usr/bin/env bash
# make test-slurm (opt-in): a quick multiapp plan as a Slurm job array on a single-node Slurm on this
# machine, started here and torn down at the end. Needs root. Installs slurm-wlm and munge if missing.
#
# Steps: munged (unless one runs), slurmctld and slurmd with a throwaway slurm.conf in a scratch
# directory (SLURM_CONF points there; nothing under /etc/slurm is touched); `intnw-lab experiment
# multiapp --quick --plan-only --slurm`; P/slurm/submit.sh (job array + dependent merge job); wait for
# both; check the merged run directory holds every planned trial; stop the daemons this script started.
# KEEP=1 keeps the scratch directory. Exit 0 only when the array completed and the merge has all trials.
set -uo pipefail
cd "$(dirname "$0")/.."
say() { echo "test-slurm: $*"; }
[ "$(id -u)" = 0 ] || { say "needs root (network namespaces, and the daemons)"; exit 1; }

missing=""
for p in slurm-wlm munge; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; done
if [ -n "$missing" ]; then
    say "installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || { say "could not install$missing"; exit 1; }
fi

LAB=${INTNW_LAB:-$PWD/.build/debug/intnw-lab}
[ -x "$LAB" ] || { say "$LAB missing: make build (or INTNW_LAB=path/to/intnw-lab)"; exit 1; }
W=$(mktemp -d /tmp/intnw-slurm.XXXXXX)
chmod 755 "$W"
NODE=$(hostname -s)
CPUS=$(nproc)
PIDS=()
STARTED_MUNGE=""
cleanup() {
    # Only what this script started, by pid.
    if [ -n "${SLURM_CONF:-}" ]; then scancel --quiet --name=intnw-multiapp --name=intnw-multiapp-merge 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$STARTED_MUNGE" ]; then
        if [ -s "$W/munge/munged.pid" ]; then kill "$(cat "$W/munge/munged.pid")" 2>/dev/null || true
        else say "munged was started but left no pid file: stop it by hand"; fi
    fi
    if [ "${KEEP:-0}" = 1 ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

mkdir -p "$W/state" "$W/spool"
cat > "$W/slurm.conf" <<EOF
ClusterName=intnwlab
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
MpiDefault=none
NodeName=$NODE CPUs=$CPUS State=UNKNOWN
PartitionName=lab Nodes=$NODE Default=YES MaxTime=60 State=UP
EOF
export SLURM_CONF=$W/slurm.conf

# munge: reuse a running munged, else start one with the packaged key.
if ! munge -n </dev/null >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        (mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || create-munge-key -f) >/dev/null 2>&1
        chown munge:munge /etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge "$W/munge" && chown munge:munge /run/munge "$W/munge" 2>/dev/null
    if runuser -u munge -- munged --pid-file="$W/munge/munged.pid" 2>"$W/munged.err" || munged --force --pid-file="$W/munge/munged.pid" 2>>"$W/munged.err"; then
        STARTED_MUNGE=1
    fi
    sleep 1
    munge -n </dev/null >/dev/null 2>&1 || { say "munge does not work: $(cat "$W/munged.err")"; exit 1; }
fi
say "munge works"

t0=$(date +%s)
slurmctld -D -f "$SLURM_CONF" >"$W/slurmctld.out" 2>&1 & PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$W/slurmd.out" 2>&1 & PIDS+=($!)
for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1)
    [ "$state" = idle ] && break
    sleep 1
done
if [ "${state:-}" != idle ]; then
    say "the node did not come up (state '${state:-none}'); slurmctld/slurmd logs:"
    tail -n 20 "$W/slurmctld.log" "$W/slurmd.log" "$W/slurmctld.out" "$W/slurmd.out" 2>/dev/null
    exit 1
fi
say "single-node Slurm up in $(( $(date +%s) - t0 )) s: node $NODE, $CPUS CPUs, partition lab"
# The first trial submitted right after the daemons start ran late (emulator p99 10.8 ms, over the
# 2 ms fidelity bound) twice; after 15 s of quiet it did not.
sleep "${INTNW_SLURM_SETTLE:-15}"

P=$W/plan
"$LAB" experiment multiapp --quick --plan-only --slurm --slurm-cpus 2 --prefix islm --out "$P" || { say "planning failed"; exit 1; }
submitted=$(bash "$P/slurm/submit.sh") || { say "submit failed: $submitted"; exit 1; }
echo "$submitted"
array=$(echo "$submitted" | sed -n 's/.*job array \([0-9]*\).*/\1/p')
merge=$(echo "$submitted" | sed -n 's/.*merge: job \([0-9]*\).*/\1/p')
t1=$(date +%s)
deadline=$(( t1 + 900 ))
while [ "$(date +%s)" -lt $deadline ]; do
    left=$(squeue -h -j "$array,$merge" 2>/dev/null | wc -l)
    [ "$left" = 0 ] && break
    sleep 5
done
say "jobs ended after $(( $(date +%s) - t1 )) s"
scontrol show job "$array" 2>/dev/null | grep -E 'JobId=|JobState=' | paste - - | sed 's/^/  /'
scontrol show job "$merge" 2>/dev/null | grep -E 'JobId=|JobState=' | paste - - | sed 's/^/  merge /'
for f in "$P"/results/logs/*.out; do echo "--- $(basename "$f")"; tail -n 4 "$f"; done

rc=0
if [ ! -f "$P/merged/experiment.json" ]; then
    say "FAILED: no merged run directory ($P/merged)"; rc=1
else
    python3 - "$P/merged/experiment.json" "$(wc -l < "$P/specs.txt")" <<'EOF' || rc=1
import json, sys
r = json.load(open(sys.argv[1]))
v = r["verdict"]
print("verdict: expectation", "HELD" if v["held"] else "NOT HELD")
for l in v["lines"]: print("  ", l)
trials = [t for t in r["trials"] if t.get("status") == "completed"]
print(f"merged {len(trials)} completed trial(s) from hosts {sorted({t.get('host') for t in trials})}, prefixes {sorted(t.get('prefix') for t in trials)}")
planned = int(sys.argv[2])
print(f"{planned} trial(s) planned")
sys.exit(0 if len(trials) == planned and not r.get("excluded") else 1)
EOF
fi
left=$(ip netns list 2>/dev/null | grep -c '^islm' || true)
[ "$left" = 0 ] || { say "FAILED: $left namespace(s) left behind"; rc=1; }
[ $rc = 0 ] && say "PASSED: job array of $(wc -l < "$P/specs.txt") trials and the dependent merge completed" || say "FAILED"
exit $rc
