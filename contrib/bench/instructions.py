#!/usr/bin/python3
"""Instructions greedylrd executes per operation, counted by callgrind.

Throughput on a shared machine moves with its load; instruction counts do not. For each
operation this runs the daemon under valgrind --tool=callgrind twice, with a small and a
large number of the operation after the same setup, and divides the difference of the
two totals by the difference of the counts: what one more operation costs, startup and
setup cancelled out. With --against, a second daemon (say, the build before a change) is
measured the same way and the table shows both and their ratio.

    /usr/bin/python3 contrib/bench/instructions.py --daemon build/release/src/greedylrd \\
        [--against OTHER/src/greedylrd] [--ops report,history,csv,list] \\
        [--ceiling build/release/contrib/bench/ceiling]

Build the daemons optimized and without sanitizers (sh contrib/quickstart.sh bench does).
A run takes a few minutes: callgrind is about fifty times slower than the daemon.
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

JOBS = 20  # jobs the reports go round, as clients of one daemon do
HISTORY_ROWS = 2000  # reports of the job that history reads and exports read

# Each operation: what one of it is, and the two counts of it measured.
OPS = {
    "report": ("POST /v1/jobs/{id}/reports (20 jobs in turn)", (500, 2500)),
    "history": ("GET history?max_points=100 over 2,000 rows", (10, 60)),
    "csv": ("GET history?format=csv of 2,000 rows", (2, 12)),
    "list": ("GET /v1/jobs?page_size=20 (jobs in memory)", (10, 60)),
}


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, response.status, data[:200]))


def run(daemon, op, count, ceiling=False):
    """The instructions of one daemon run: setup, then count operations of op. ceiling: the
    daemon is the bare-HTTP ceiling server (contrib/bench/ceiling.c), which has no database
    and answers every request alike."""
    work = tempfile.mkdtemp(prefix="glr-instructions-")
    out = os.path.join(work, "callgrind.out")
    database = [] if ceiling else ["--db", os.path.join(work, "bench.db")]
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, daemon,
         "--listen", "127.0.0.1:0", "--threads", "2"] + database,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        client = Client(int(line.strip().rsplit(":", 1)[1]))
        for j in range(JOBS):
            client.call("PUT", "/v1/jobs/j%d" % j, {"lr": 0.1})
        if op in ("history", "csv"):
            for k in range(HISTORY_ROWS):
                client.call("POST", "/v1/jobs/j0/reports", {"step": k, "loss": 1.0 / (1 + k)})
        for k in range(count):
            if op == "report":
                client.call("POST", "/v1/jobs/j%d/reports" % (k % JOBS),
                            {"step": k // JOBS, "loss": 1.0 / (1 + k)})
            elif op == "history":
                client.call("GET", "/v1/jobs/j0/history?max_points=100")
            elif op == "csv":
                client.call("GET", "/v1/jobs/j0/history?format=csv")
            elif op == "list":
                client.call("GET", "/v1/jobs?page_size=20")
        client.conn.close()
    finally:
        proc.terminate()
        proc.wait()
    total = 0
    for name in glob.glob(out + "*"):
        with open(name) as f:
            for text in f:
                m = re.match(r"(summary|totals): (\d+)", text)
                if m:
                    total += int(m.group(2))
                    break
    shutil.rmtree(work, ignore_errors=True)
    if not total:
        raise RuntimeError("callgrind wrote no totals for %s" % op)
    return total


def per_op(daemon, op, ceiling=False):
    small, large = OPS[op][1]
    return ((run(daemon, op, large, ceiling) - run(daemon, op, small, ceiling))
            / (large - small))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemon", required=True, help="the greedylrd to measure")
    parser.add_argument("--against", help="another greedylrd to compare with")
    parser.add_argument("--ops", default=",".join(OPS), help="of " + ",".join(OPS))
    parser.add_argument("--ceiling", help="the ceiling server: its instructions per request "
                        "of a report, and a report's as a multiple of them")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("instructions: valgrind is missing (Debian: apt-get install valgrind)")
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in OPS:
            sys.exit("instructions: no operation %r (%s)" % (o, ",".join(OPS)))
    if args.against:
        print("| operation | instructions, --against | instructions, --daemon | ratio |")
        print("|---|---|---|---|")
    else:
        print("| operation | instructions |")
        print("|---|---|")
    for o in ops:
        mine = per_op(args.daemon, o)
        if args.against:
            theirs = per_op(args.against, o)
            print("| %s | %s | %s | %.3f |" % (OPS[o][0], format(round(theirs), ","),
                                               format(round(mine), ","), mine / theirs))
        else:
            print("| %s | %s |" % (OPS[o][0], format(round(mine), ",")))
        sys.stdout.flush()
    if args.ceiling:
        report = per_op(args.daemon, "report")
        ceiling = per_op(args.ceiling, "report", ceiling=True)
        print()
        print("| a report | instructions |")
        print("|---|---|")
        print("| the ceiling's request | %s |" % format(round(ceiling), ","))
        print("| greedylrd's report | %s (%.2fx the ceiling's) |"
              % (format(round(report), ","), report / ceiling))


if __name__ == "__main__":
    main()
