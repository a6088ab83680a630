#!/usr/bin/env python3
"""Independent per-bin check of an experiment run directory.

Reads what the lab wrote for a run (results.json, throughput_1s.csv, every trial's pcaps, oracle.txt
and replay-start.json) and recomputes the byte counts from the pcaps with tshark and the IntNW
Wireshark dissector (tools/wireshark/intnw.lua). It shares no code with the Swift analyzer: it is
a second way to the same numbers, so a bug in one shows up as a disagreement.

Checks, for every trial and every 1 s bin from the trial's origin (results.json originNanoseconds):
  D  the analyzer's interface series (throughput_1s.csv, kind=interface) equal tshark's TCP payload
     bytes of that capture, per direction, in every bin
  A  the sum of the apps' bytes (kind=app) is at most tshark's interface bytes of the booking side
     (uplink: server-side captures when the trial has them; downlink: client side)
  B  the apps on a set of connections carry at most tshark's bytes of those connections (same bin)
  C  no app bin and no tshark interface bin exceeds the trace's capacity over the bin (oracle.txt)
     plus one 1500-byte packet and 10 ms at the link's rate
  T  each app's bins sum to its total in results.json; for an IntNW app that total equals the
     dissector's DATA bytes carrying the app's id; for a plain-TCP app on connections of its own, it
     equals the distinct stream bytes tshark captured on them (on a connection with a hole the capture never
     filled, tshark cannot decode past the hole: there they may differ by at most the bytes captured
     after the first hole, and a note says so)
  R  results.json reports accountingViolations 0 and capacityViolations 0 for the trial
  G  results are aggregated per (variant, app): each aggregate counts the trials of its variant;
     an interval only with n >= 2, never below 0, and around the mean

Exit status: 0 no violation, 1 violations found (each printed as "VIOLATION <check> ..."),
2 usage or input error (missing or malformed file, tshark missing or failing).
"""
import argparse
import collections
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

PROG = 'check-run'
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LUA = os.path.join(HERE, 'wireshark', 'intnw.lua')
BIN_NS = 1_000_000_000
FIELDS = ['frame.time_epoch', 'tcp.srcport', 'tcp.dstport', 'tcp.len', 'intnw.data.length', 'intnw.app',
          'intnw.data.irob', 'intnw.hello.session', 'tcp.seq']


class InputError(Exception):
    """A run directory that cannot be checked (exit 2)."""


def epoch_ns(text):
    """tshark's frame.time_epoch ("1796512748.250365730") as integer nanoseconds, without floats."""
    sec, _, frac = text.strip().partition('.')
    if not sec.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(text)
    return int(sec) * BIN_NS + int((frac + '000000000')[:9])


def bin_of(ns, origin):
    """The analyzer's 1 s bin of a packet: bins start at the trial origin; earlier packets go to bin 0."""
    return (ns - origin) // BIN_NS if ns > origin else 0


def tshark_rows(tshark, lua, pcap):
    """Yields one list of tab-separated fields per TCP packet; streams tshark's output."""
    args = [tshark, '-n', '-o', 'tcp.reassemble_out_of_order:TRUE', '-X', 'lua_script:' + lua, '-r', pcap,
            '-Y', 'tcp', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=;']
    for f in FIELDS:
        args += ['-e', f]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in p.stdout:
                yield line.rstrip('\n').split('\t')
        finally:
            p.stdout.close()
            rc = p.wait()
        if rc != 0:
            err.seek(0)
            msg = err.read().decode(errors='replace').strip().splitlines()
            raise InputError(f'tshark failed on {pcap} (exit {rc}): {msg[0] if msg else "no message"}')


class Coverage:
    """Which stream bytes of one connection direction the capture holds: disjoint [start, end) ranges
    of relative sequence numbers. A hole is a range between two held ones (never captured)."""

    def __init__(self):
        self.ranges = []

    def add(self, start, n):
        end = start + n
        r = self.ranges
        if not r or start > r[-1][1]:
            r.append([start, end])
            return
        if start >= r[-1][0]:
            r[-1][1] = max(r[-1][1], end)
            return
        merged = []
        for a, b in r:
            if b < start or a > end:
                merged.append([a, b])
            else:
                start, end = min(a, start), max(b, end)
        merged.append([start, end])
        merged.sort()
        self.ranges = merged

    def held(self):
        """Distinct stream bytes captured."""
        return sum(b - a for a, b in self.ranges)

    def after_first_hole(self):
        """Bytes held after the first hole (0 without a hole)."""
        return sum(b - a for a, b in self.ranges[1:])


def load_schedule(tdir):
    """The trace's capacity per interface: (replay start on the pcap clock, {iface: [slices]}) or None.
    oracle.txt lines: link IFACE START_S UP_BPS DOWN_BPS RTT_MS AVAILABLE(0/1)."""
    oracle, start = os.path.join(tdir, 'oracle.txt'), os.path.join(tdir, 'replay-start.json')
    if not (os.path.exists(oracle) and os.path.exists(start)):
        return None
    try:
        with open(start) as f:
            real = int(json.load(f)['realtimeNs'])
        links = collections.defaultdict(list)
        with open(oracle) as f:
            for line in f:
                fl = line.split()
                if len(fl) == 7 and fl[0] == 'link':
                    links[fl[1]].append((float(fl[2]), float(fl[3]), float(fl[4]), float(fl[5]), fl[6] == '1'))
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise InputError(f'{tdir}: unreadable capacity schedule (oracle.txt, replay-start.json): {e}')
    for k in links:
        links[k].sort()
    return (real, links) if links else None


def integral(slices, up, a, b):
    """Bytes the link could carry between trace times a and b (seconds)."""
    tot = 0.0
    for i, s in enumerate(slices):
        lo = max(a, -math.inf if i == 0 else s[0])
        hi = min(b, slices[i + 1][0] if i + 1 < len(slices) else math.inf)
        if hi > lo and s[4]:
            tot += (hi - lo) * (s[1] if up else s[2])
    return tot


def allowed(sched, iface, up, t0ns, t1ns):
    """Capacity over [t0, t1) or over it shifted back by the one-way delay, whichever is larger,
    plus one 1500-byte packet and 10 ms at the current rate. None when the link is unknown."""
    real, links = sched
    sl = links.get(iface)
    if not sl:
        return None
    a, b = (t0ns - real) / 1e9, (t1ns - real) / 1e9
    cur = [s for s in sl if s[0] <= a]
    cur = cur[-1] if cur else sl[0]
    d = cur[3] / 2000
    cap = max(integral(sl, up, a, b), integral(sl, up, a - d, b - d))
    rate = (cur[1] if up else cur[2]) if cur[4] else 0
    return cap + 1500 + 0.010 * rate


def load_series(run):
    path = os.path.join(run, 'throughput_1s.csv')
    series = collections.defaultdict(dict)  # (trial, kind, name, direction) -> {bin: bytes}
    try:
        with open(path, newline='') as f:
            for n, r in enumerate(csv.DictReader(f), start=2):
                try:
                    key = (r['trial'], r['kind'], r['name'], r['direction'])
                    series[key][int(round(float(r['time_s'])))] = int(r['bytes'])
                except (KeyError, ValueError, TypeError):
                    raise InputError(f'{path}:{n}: not a throughput row (trial,kind,name,direction,time_s,bytes)')
    except FileNotFoundError:
        raise InputError(f'{run}: no throughput_1s.csv (is this an experiment run directory?)')
    return series


def check_run(run, tshark, lua, roots=()):
    """Returns (problems, notes, summary line); problems are (check letter, text)."""
    if not os.path.isdir(run):
        raise InputError(f'{run}: not a directory')
    try:
        with open(os.path.join(run, 'results.json')) as f:
            res = json.load(f)
    except FileNotFoundError:
        raise InputError(f'{run}: no results.json (is this an experiment run directory?)')
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f'{run}/results.json: not JSON ({e})')
    series = load_series(run)
    try:
        return check_results(run, res, series, tshark, lua, roots)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise InputError(f'{run}/results.json: unexpected shape ({type(e).__name__}: {e})')


def find_trial(run, tname, roots):
    """A trial's directory: RUN/<name>, else under each --trials DIR as <name> or as a job directory
    <variant>.trial-<n> (what `analyze --merge` reads)."""
    for d in [os.path.join(run, tname)] + [os.path.join(r, x) for r in roots for x in (tname, tname.replace('/', '.'))]:
        if os.path.isdir(d):
            return d
    where = ', '.join([run] + list(roots))
    raise InputError(f'{run}: trial directory {tname} not found in {where} (a merged run keeps its trials elsewhere: --trials DIR)')


def check_trial(run, t, series, tshark, lua, problems, notes, roots):
    tname = t['name']
    tdir = find_trial(run, tname, roots)
    origin = int(t['originNanoseconds'])
    sched = load_schedule(tdir)
    captures = [c for c in t['captures'] if c['packets'] > 0]
    has_server = any(c['side'] == 'server' for c in captures)
    appid = {a['appId']: a['name'] for a in t['apps'] if a.get('appId') is not None}
    conn_bins = {}  # (connection id, uplink) -> Counter(bin -> bytes)
    iface_bins = {}  # (interface label, uplink) -> Counter(bin -> bytes)
    dissector_app = collections.Counter()  # (app name, uplink) -> DATA bytes on the booking side
    # IROBs whose toy header crossed another network of the session: the dissector of one capture
    # reports app 0 for them; resolved by (side, session, direction, IROB id) across the captures.
    irob_app = {}  # (side, connection, uplink, irob) -> app id
    pending = collections.Counter()  # (side, connection, uplink, irob, booked) -> DATA bytes of app 0
    session_of = {}  # connection id -> IntNW session
    coverage = collections.defaultdict(Coverage)  # (connection id, uplink) -> captured stream ranges
    for cap in captures:
        pcap = os.path.join(tdir, cap['file'])
        if not os.path.exists(pcap):
            raise InputError(f'{tdir}: capture {cap["file"]} missing')
        label = cap['interface'] + (' (server)' if cap['side'] == 'server' else '')
        ports = {}
        for c in t['connections']:
            if c['capture'] != cap['file']:
                continue
            cp, sp = c['client'].rsplit(':', 1)[-1], c['server'].rsplit(':', 1)[-1]
            ports[(cp, sp)] = (c['id'], True)
            ports[(sp, cp)] = (c['id'], False)
        books_up = cap['side'] == 'server' or not has_server
        books_down = cap['side'] == 'client'
        for row in tshark_rows(tshark, lua, pcap):
            row += [''] * (len(FIELDS) - len(row))
            tstr, sport, dport, tlen, dlen, dapp, dirob, sess, seq = row[:len(FIELDS)]
            k = ports.get((sport, dport))
            if k is None:
                continue
            if sess:
                session_of[k[0]] = sess.split(';')[0]
            if not tlen or tlen == '0':
                continue
            try:
                ns, n = epoch_ns(tstr), int(tlen)
                coverage[k].add(int(seq), n)
                lens = [int(x) for x in dlen.split(';') if x]
                apps = [int(x) for x in dapp.split(';') if x]
                irobs = [int(x) for x in dirob.split(';') if x]
            except ValueError:
                raise InputError(f'{pcap}: cannot read tshark fields {row}')
            if not (len(lens) == len(apps) == len(irobs)):
                raise InputError(f'{pcap}: dissector fields do not line up (DATA lengths {lens}, apps {apps}, IROBs {irobs})')
            b = bin_of(ns, origin)
            conn_bins.setdefault(k, collections.Counter())[b] += n
            iface_bins.setdefault((label, k[1]), collections.Counter())[b] += n
            booked = (k[1] and books_up) or (not k[1] and books_down)
            for length, a, i in zip(lens, apps, irobs):
                if a != 0:
                    irob_app[(cap['side'], k[0], k[1], i)] = a
                    if booked:
                        dissector_app[(appid.get(a, 'app%d' % a), k[1])] += length
                else:
                    pending[(cap['side'], k[0], k[1], i, booked)] += length
    by_session = {(side, session_of.get(c), up, i): a for (side, c, up, i), a in irob_app.items()}
    unresolved = 0
    for (side, c, up, i, booked), length in pending.items():
        a = by_session.get((side, session_of.get(c), up, i))
        if a is None:
            unresolved += length
        elif booked:
            dissector_app[(appid.get(a, 'app%d' % a), up)] += length
    if unresolved:
        notes.append(f'{tname}: {unresolved} dissector DATA bytes of IROBs whose app no capture showed')

    # D: the analyzer's interface series equal tshark's.
    for (label, up), bins in sorted(iface_bins.items()):
        s = series.get((tname, 'interface', label, 'uplink' if up else 'downlink'), {})
        for b in sorted(set(bins) | set(s)):
            if bins.get(b, 0) != s.get(b, 0):
                problems.append(('D', f'{tname} interface {label} {"uplink" if up else "downlink"} bin {b}: '
                                      f'tshark {bins.get(b, 0)} B, analyzer {s.get(b, 0)} B'))
    # A and C: the apps per bin.
    apps = [a['name'] for a in t['apps']]
    ifaces = sorted({c['interface'] for c in captures})
    nbins = 0
    for up in (True, False):
        d = 'uplink' if up else 'downlink'
        side = ' (server)' if (up and has_server) else ''
        allbins = set()
        for a in apps:
            allbins |= set(series.get((tname, 'app', a, d), {}))
        for b in sorted(allbins):
            nbins += 1
            tot = sum(series.get((tname, 'app', a, d), {}).get(b, 0) for a in apps)
            ib = sum(iface_bins.get((i + side, up), {}).get(b, 0) for i in ifaces)
            if tot > ib:
                problems.append(('A', f'{tname} {d} bin {b}: apps {tot} B > tshark interfaces {ib} B'))
            if sched:
                t0 = origin + b * BIN_NS
                cap_all = sum(x for x in (allowed(sched, i, up, t0, t0 + BIN_NS) for i in ifaces) if x is not None)
                for a in apps:
                    v = series.get((tname, 'app', a, d), {}).get(b, 0)
                    if v > cap_all:
                        problems.append(('C', f'{tname} app {a} {d} bin {b}: {v} B > capacity {cap_all:.0f} B'))
        if sched:
            for i in ifaces:
                for b, v in sorted(iface_bins.get((i + side, up), {}).items()):
                    t0 = origin + b * BIN_NS
                    al = allowed(sched, i, up, t0, t0 + BIN_NS)
                    if al is not None and v > al:
                        problems.append(('C', f'{tname} interface {i}{side} {d} bin {b}: tshark {v} B > capacity {al:.0f} B'))
    # B: the apps on a set of connections (of the booking side) against those connections' bytes.
    side_of = {c['file']: c['side'] for c in t['captures']}
    for a in t['apps']:
        for up in (True, False):
            d = 'uplink' if up else 'downlink'
            side = 'server' if (up and has_server) else 'client'
            # The group: the apps sharing a connection with this one, and the apps sharing one with
            # those, and so on; its connections: every connection of any of them. (An app's bytes
            # per bin are not split by connection: with bg on a connection of its own as well as on
            # one it shares with fg, fg's connections alone would not hold bg's bytes.)
            booked = [c for c in t['connections'] if c.get('app') and side_of.get(c['capture']) == side]
            sharers = {a['name']}
            while True:
                mine = [c for c in booked if sharers & set(c['app'].split('+'))]
                grown = sharers.union(*(set(c['app'].split('+')) for c in mine))
                if grown == sharers:
                    break
                sharers = grown
            s = series.get((tname, 'app', a['name'], d), {})
            for b in sorted(s):
                tot = sum(series.get((tname, 'app', x, d), {}).get(b, 0) for x in sharers)
                cb = sum(conn_bins.get((c['id'], up), {}).get(b, 0) for c in mine)
                if tot > cb:
                    problems.append(('B', f'{tname} app {a["name"]} (with {"+".join(sorted(sharers)) or "none"}) {d} bin {b}: '
                                          f'apps {tot} B > tshark connections {cb} B'))
            # T: totals.
            tot = sum(s.values())
            want = a['throughput']['uplinkBytes' if up else 'downlinkBytes']
            if tot != want:
                problems.append(('T', f'{tname} app {a["name"]} {d}: bins sum to {tot} B, results.json says {want} B'))
            if a['variant'] == 'intnw':
                dis = dissector_app.get((a['name'], up), 0)
                # Past a hole the capture never filled, tshark cannot reassemble the stream and the
                # dissector stops decoding that connection; the analyzer resumes at the next frame.
                # There the two may differ by at most the bytes captured after the first hole.
                slack = sum(coverage[(c['id'], up)].after_first_hole() for c in mine)
                if abs(dis - want) > slack:
                    problems.append(('T', f'{tname} app {a["name"]} {d}: dissector DATA {dis} B, analyzer {want} B'
                                          + (f' (more apart than the {slack} B captured after a capture hole)' if slack else '')))
                elif dis != want:
                    notes.append(f'{tname} app {a["name"]} {d}: dissector DATA {dis} B, analyzer {want} B: within the {slack} B '
                                 f'captured after a hole the capture never filled (tshark cannot decode past it)')
            elif mine and all(c['protocol'] == 'toy' and c['app'] == a['name'] for c in mine):
                # A plain-TCP connection of one app carries nothing but its toy messages: the app's
                # bytes are the distinct stream bytes captured on it.
                held = sum(coverage[(c['id'], up)].held() for c in mine)
                if held != want:
                    problems.append(('T', f'{tname} app {a["name"]} {d}: tshark stream bytes of its own connections {held} B, analyzer {want} B'))
    # R: what the analyzer itself says.
    if t['accountingViolations'] != 0 or (t.get('capacityViolations') or 0) != 0:
        problems.append(('R', f'{tname}: results.json says accountingViolations {t["accountingViolations"]}, '
                              f'capacityViolations {t.get("capacityViolations")}'))
    if sched is None:
        notes.append(f'{tname}: no capacity schedule (oracle.txt, replay-start.json): C not checked')
    return nbins


def check_results(run, res, series, tshark, lua, roots):
    problems, notes = [], []
    nbins = 0
    for t in res['trials']:
        nbins += check_trial(run, t, series, tshark, lua, problems, notes, roots)
    # G: aggregation per (variant, app).
    per_variant = collections.Counter(str(t.get('variant')) for t in res['trials'])
    for ag in res['aggregate']['apps']:
        v = ag.get('experimentVariant')
        who = f'aggregate {v}/{ag["name"]}'
        n = sum(1 for t in res['trials'] if t.get('variant') == v and any(a['name'] == ag['name'] for a in t['apps']))
        if ag['trials'] != n:
            problems.append(('G', f'{who}: {ag["trials"]} trials, the run has {n} of variant {v} with this app'))
        for key, e in sorted(ag.items()):
            if not (isinstance(e, dict) and 'mean' in e):
                continue
            if e.get('n') != ag['trials']:
                problems.append(('G', f'{who} {key}: n {e.get("n")} != {ag["trials"]} trials'))
            lo, hi = e.get('low'), e.get('high')
            if (e.get('halfWidth') is not None or lo is not None or hi is not None) and ag['trials'] < 2:
                problems.append(('G', f'{who} {key}: an interval from {ag["trials"]} trial(s)'))
            if lo is not None and lo < 0:
                problems.append(('G', f'{who} {key}: interval below zero (low {lo})'))
            if lo is not None and hi is not None and not (lo <= e['mean'] <= hi):
                problems.append(('G', f'{who} {key}: mean {e["mean"]} outside [{lo}, {hi}]'))
    variants = sorted({str(ag.get('experimentVariant')) for ag in res['aggregate']['apps']})
    summary = (f'{run}: {len(res["trials"])} trials, variants {dict(sorted(per_variant.items()))}, '
               f'aggregated per variant {variants}, app bins checked {nbins}')
    return problems, notes, summary


def main(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split('\n\n', 1)[1] if '\n\n' in __doc__ else __doc__,
        epilog='Bytes are TCP payload bytes; bins are 1 s wide. Needs tshark (apt-get install tshark).')
    ap.add_argument('runs', metavar='RUN_DIR', nargs='+',
                    help='experiment run directory (results.json, throughput_1s.csv, one directory per trial with its pcaps)')
    ap.add_argument('--trials', metavar='DIR', action='append', default=[],
                    help='also look for trial directories here, as <variant>/trial-<n> or <variant>.trial-<n> '
                         '(a run written by `intnw-lab analyze --merge`: the job directories); repeatable')
    ap.add_argument('--lua', default=DEFAULT_LUA, help='IntNW dissector (default: %(default)s)')
    ap.add_argument('--tshark', default=None, help='tshark executable (default: tshark on PATH)')
    ap.add_argument('--max-lines', type=int, default=50, metavar='N',
                    help='print at most N violations per run (all are counted; default %(default)s)')
    args = ap.parse_args(argv)  # exits 2 on a usage error
    tshark = args.tshark or shutil.which('tshark')
    if not tshark or not os.access(tshark, os.X_OK):
        print(f'{PROG}: error: tshark not found (apt-get install tshark, or --tshark PATH)', file=sys.stderr)
        return 2
    if not os.path.isfile(args.lua):
        print(f'{PROG}: error: dissector {args.lua} not found (--lua PATH)', file=sys.stderr)
        return 2
    if args.max_lines < 0:
        print(f'{PROG}: error: --max-lines must be >= 0', file=sys.stderr)
        return 2
    total = 0
    for run in args.runs:
        try:
            problems, notes, summary = check_run(run.rstrip('/') or '/', tshark, args.lua, args.trials)
        except InputError as e:
            print(f'{PROG}: error: {e}', file=sys.stderr)
            return 2
        except OSError as e:
            print(f'{PROG}: error: {run}: {e}', file=sys.stderr)
            return 2
        print(summary)
        for n in notes:
            print('  note:', n)
        for check, text in problems[:args.max_lines]:
            print(f'  VIOLATION {check}: {text}')
        if len(problems) > args.max_lines:
            print(f'  ... and {len(problems) - args.max_lines} more')
        counts = collections.Counter(c for c, _ in problems)
        print(f'  violations: {len(problems)}' + (f' ({", ".join(f"{c} {k}" for c, k in sorted(counts.items()))})' if counts else ''))
        total += len(problems)
    return 1 if total else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
