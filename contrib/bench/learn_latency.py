#!/usr/bin/python3
"""Does learning delay reports? A report's latency with and without a family learning.

It starts a greedylrd (on a free port, with a temporary database), fills a family with
--runs finished jobs of --reports reports each (the learning reads every one of them, the
most a model is trained on is 64), and then times reports of --clients running jobs (one
keep-alive connection each, a report at a time) in rounds that take turns: "quiet";
"learning", while another connection asks POST /v1/families/{name}/learn again and again
(the worst case: one core of the machine kept learning); and "learning every 1 s", as a
service learns when runs finish.
The table shows, per arm, the median over the rounds of each round's median, 99th
percentile and reports per second, the learning arm's ratio to the quiet one, and how many
models were learned and how long one took.

    /usr/bin/python3 contrib/bench/learn_latency.py [--daemon build/release/src/greedylrd]
        [--runs 64] [--reports 2000] [--clients 4] [--seconds 5] [--rounds 3]

Build the daemon optimized and without sanitizers (sh contrib/quickstart.sh bench does).
"""
import argparse
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import Server  # noqa: E402  (the daemon started as the other benchmarks start it)

FAMILY = "latency"


def log(message):
    print(f"learn_latency: {message}", file=sys.stderr, flush=True)


class Connection:
    """One keep-alive connection that sends JSON and reads JSON."""

    def __init__(self, port):
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.http.request(method, path, body=data, headers=headers)
        response = self.http.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload) if payload else None


def fill_family(port, runs, reports):
    """Finished jobs of the family, each with its losses and a different lr."""
    conn = Connection(port)
    for k in range(runs):
        job = f"{FAMILY}-done-{k}"
        conn.call("PUT", f"/v1/jobs/{job}", {"lr": 0.01 * (1 + k % 4), "policy": "auto",
                                              "family": FAMILY,
                                              "config": {"total_steps": reports}})
        for step in range(reports):
            loss = 1.0 / (1 + step * (1 + k % 4) / reports) + 0.01 * math.sin(step + k)
            conn.call("POST", f"/v1/jobs/{job}/reports", {"step": step, "loss": loss})
        conn.call("PATCH", f"/v1/jobs/{job}", {"status": "finished"})


def time_reports(port, client, first_step, seconds, latencies):
    """Reports of one job for seconds; appends each latency in microseconds."""
    conn = Connection(port)
    job = f"{FAMILY}-live-{client}"
    step = first_step
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter_ns()
        conn.call("POST", f"/v1/jobs/{job}/reports", {"step": step, "loss": 1.0 / (1 + step)})
        latencies.append((time.perf_counter_ns() - started) / 1000)
        step += 1
    return step


def learn_until(port, stop, durations, interval):
    conn = Connection(port)
    while not stop.is_set():
        started = time.perf_counter()
        conn.call("POST", f"/v1/families/{FAMILY}/learn")
        durations.append(time.perf_counter() - started)
        stop.wait(max(0.0, interval - (time.perf_counter() - started)))


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", default=os.path.join(HERE, "..", "..", "build", "release",
                                                          "src", "greedylrd"))
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = Server([args.daemon, "--db", os.path.join(scratch, "bench.db"),
                         "--log-level", "warn"])
        try:
            log(f"filling family {FAMILY}: {args.runs} runs of {args.reports} reports")
            fill_family(server.port, args.runs, args.reports)
            conn = Connection(server.port)
            for client in range(args.clients):
                conn.call("PUT", f"/v1/jobs/{FAMILY}-live-{client}",
                          {"lr": 0.01, "policy": "auto", "family": FAMILY})
            steps = [0] * args.clients
            intervals = {"quiet": None, "learning": 0.0, "learning every 1 s": 1.0}
            results = {arm: [] for arm in intervals}
            durations = []
            for round_number in range(args.rounds):
                arms = list(intervals)[round_number % 3:] + list(intervals)[:round_number % 3]
                for arm in arms:
                    latencies = []
                    stop = threading.Event()
                    learner = None
                    if intervals[arm] is not None:
                        learner = threading.Thread(target=learn_until,
                                                   args=(server.port, stop, durations,
                                                         intervals[arm]))
                        learner.start()
                    threads = []
                    for client in range(args.clients):
                        def run(c=client):
                            steps[c] = time_reports(server.port, c, steps[c], args.seconds,
                                                    latencies)
                        threads.append(threading.Thread(target=run))
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    stop.set()
                    if learner:
                        learner.join()
                    results[arm].append((statistics.median(latencies),
                                         percentile(latencies, 0.99),
                                         len(latencies) / args.seconds))
                    log(f"round {round_number + 1} {arm}: p99 {results[arm][-1][1]:.0f} us")
        finally:
            server.stop()
    rows = {arm: [statistics.median(r[i] for r in results[arm]) for i in range(3)]
            for arm in results}
    print(f"| {args.clients} clients, {args.runs} runs of {args.reports} reports in the family "
          "| median (us) | p99 (us) | reports/s |")
    print("|---|---|---|---|")
    quiet = rows["quiet"]
    for arm in intervals:
        median, p99, rate = rows[arm]
        ratios = "" if arm == "quiet" else (f" ({median / quiet[0]:.2f}x) | {p99:.0f} "
                                            f"({p99 / quiet[1]:.2f}x) | {rate:.0f} "
                                            f"({rate / quiet[2]:.2f}x) |")
        if ratios:
            print(f"| {arm} | {median:.0f}{ratios}")
        else:
            print(f"| {arm} | {median:.0f} | {p99:.0f} | {rate:.0f} |")
    print()
    print(f"{len(durations)} models learned while reports were timed, "
          f"median {statistics.median(durations) * 1000:.0f} ms each "
          f"({args.runs} histories of {args.reports} reports).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
