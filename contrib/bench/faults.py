#!/usr/bin/python3
"""Two figures of the faults a hostile client or a long rewind once caused, measured in
one run against a greedylrd built without sanitizers:

  rewind   a job of ROWS history rows (written straight into the database, as a long
           training would have) is rewound to its start while another connection reports
           to another job; prints how long the rewind took and the slowest of those
           reports. (Run it a few times: when the two connections fall on the same
           server thread, the report also waits for the thread.)
  bodies   with an API token in the database, 300 connections from 3 loopback addresses
           each send a 1 MiB body to /healthz; prints the daemon's RSS before and after.

    contrib/bench/faults.py DAEMON rewind [ROWS]     (default 1260000)
    contrib/bench/faults.py DAEMON bodies
"""

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time


def start(daemon, db, *extra):
    """Starts the daemon on db at a free port; returns (process, port)."""
    process = subprocess.Popen([daemon, "--listen", "127.0.0.1:0", "--db", db,
                                "--log-level", "warn", *extra],
                               stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline().rsplit(":", 1)[1])


def stop(process):
    process.terminate()
    process.wait()


def call(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request(method, path, None if body is None else json.dumps(body),
                       {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer.status


def rewind(daemon, work, rows):
    db = os.path.join(work, "rewind.db")
    process, port = start(daemon, db)
    call(port, "PUT", "/v1/jobs/long", {"lr": 0.1, "policy": "constant"})
    call(port, "PUT", "/v1/jobs/other", {"lr": 0.1})
    stop(process)
    # A constant job's rows replay to any state: the rewind to -1 replays none of them.
    database = sqlite3.connect(db)
    seq = database.execute("SELECT seq FROM jobs WHERE id = 'long'").fetchone()[0]
    database.execute(f"WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k"
                     f" WHERE i < {rows - 1}) INSERT INTO history (job_seq, step, rank, loss,"
                     f" metric, lr, event, time_ms) SELECT {seq}, i, 0, 2.0, 2.0, 0.1, 'hold',"
                     f" 0 FROM k")
    database.execute(f"UPDATE jobs SET last_step = {rows - 1}, reports = {rows}"
                     f" WHERE seq = {seq}")
    database.commit()
    database.close()
    process, port = start(daemon, db)
    call(port, "GET", "/v1/jobs/long")  # loaded before the clock starts
    slowest, reports, done = [0.0], [0], threading.Event()

    def report_beside():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        step = 0
        while not done.is_set():
            started = time.monotonic()
            connection.request("POST", "/v1/jobs/other/reports",
                               json.dumps({"step": step, "loss": 1.0}),
                               {"Content-Type": "application/json"})
            connection.getresponse().read()
            slowest[0] = max(slowest[0], time.monotonic() - started)
            step += 1
            reports[0] += 1

    beside = threading.Thread(target=report_beside)
    beside.start()
    time.sleep(0.5)
    started = time.monotonic()
    status = call(port, "POST", "/v1/jobs/long/rewind", {"to_step": -1})
    took = time.monotonic() - started
    time.sleep(0.2)
    done.set()
    beside.join()
    stop(process)
    print(f"rewind of {rows} rows: {status} in {took:.2f} s; the other job's "
          f"{reports[0]} reports: the slowest took {slowest[0] * 1000:.1f} ms")


def bodies(daemon, work):
    db = os.path.join(work, "bodies.db")
    subprocess.run([daemon, "token", "create", "--db", db, "--role", "admin"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process, port = start(daemon, db, "--max-connections-per-ip", "0")

    def rss_kib():
        with open(f"/proc/{process.pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS")).split()[1])

    before = rss_kib()
    body = b"x" * (1024 * 1024 - 1)
    sockets = []
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", port),
                                     source_address=(f"127.0.0.{2 + i % 3}", 0))
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        s.settimeout(0.05)
        try:
            s.sendall(body)
        except OSError:
            pass  # refused unread: the daemon closed the connection
        sockets.append(s)
    time.sleep(1)
    after = rss_kib()
    for s in sockets:
        s.close()
    stop(process)
    print(f"RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with 300 connections "
          f"each sending a 1 MiB body to /healthz")


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("rewind", "bodies"):
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory(prefix="greedylr-faults-") as work:
        if sys.argv[2] == "rewind":
            rewind(sys.argv[1], work, int(sys.argv[3]) if len(sys.argv) > 3 else 1260000)
        else:
            bodies(sys.argv[1], work)


if __name__ == "__main__":
    main()
