#!/usr/bin/python3
"""The dashboard's figures (issue 15) in headless Chromium against a greedylrd of its own:

  * a job of 1,000,000 reports: from the request of its page to its chart drawn;
  * a zoom: from asking for a range to the chart redrawn with it (history re-queried);
  * a daemon of 10,000 jobs: from the request of the list's page to its first page shown;
  * the JavaScript and CSS the page loads, as sent gzip-compressed.

Times come from the page itself (performance.now(), whose origin is the navigation's
start, and the moments the page records in window.glrDash once it has drawn). Each is
the median of --runs page loads (zooms: of --zooms ranges), with the slowest beside it.
Not a test: run it by hand on a build without sanitizers, e.g.
    /usr/bin/python3 contrib/bench/dashboard.py --daemon build/release/src/greedylrd \\
        --dashboard-dir build/release/ui
"""

import argparse
import gzip
import http.client
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import Pipeline, Server  # noqa: E402  (the benchmark's own helpers)

# The targets for this machine; a figure is "ok" when it meets its target.
TARGETS = {
    "job_page_ms": 1000.0,
    "zoom_ms": 200.0,
    "list_page_ms": 300.0,
    "assets_kib": 200.0,
}
ASSETS = ["/ui/app.js", "/ui/dygraph.min.js", "/ui/style.css", "/ui/dygraph.min.css"]
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900"]


def log(message):
    print(f"dashboard bench: {message}", file=sys.stderr, flush=True)


def fill(server, reports, jobs):
    """The long job (a GreedyLR run of `reports` steps) and `jobs` more, all pipelined."""
    pipe = Pipeline(server.port)
    pipe.run([("PUT", "/v1/jobs/million",
               json.dumps({"lr": 0.1, "config": {"patience": 20}, "tags": {"family": "bench"}}))])
    started = time.monotonic()
    batch = []
    rng = random.Random(15)
    for step in range(reports):
        loss = 2.0 * math.exp(-step / 200000) + 0.2 + 0.02 * rng.random()
        batch.append(("POST", "/v1/jobs/million/reports",
                      json.dumps({"step": step, "loss": loss})))
        if len(batch) == 50000:
            pipe.run(batch)
            batch = []
    pipe.run(batch)
    log(f"{reports} reports in {time.monotonic() - started:.1f} s")
    pipe.run([("PUT", f"/v1/jobs/bench-{k:05d}",
               json.dumps({"lr": 0.01, "tags": {"family": f"f{k % 10}"}}))
              for k in range(jobs)])
    pipe.close()


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="greedylr-bench-chromium-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(60)
    return driver, profile


def wait_for(driver, script, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out: {script}")


def page_load(driver, url, mark):
    """Milliseconds from the request of url to the page's mark (a glrDash field)."""
    driver.get("about:blank")
    driver.get(url)
    return wait_for(driver, f"return window.glrDash && window.glrDash.{mark}")


def zooms(driver, count, reports):
    """Milliseconds of each of count zooms to random ranges of 0.1% to 30% of the run."""
    rng = random.Random(2310)
    took = []
    for _ in range(count):
        width = reports * rng.uniform(0.001, 0.3)
        low = rng.uniform(0, reports - width)
        took.append(driver.execute_async_script(
            "const done = arguments[2]; const t = performance.now();"
            "window.glrDash.zoom(arguments[0], arguments[1])"
            ".then(() => done(performance.now() - t), (e) => done(-1));", low, low + width))
        if took[-1] < 0:
            raise RuntimeError("a zoom failed")
    return took


def compressed_kib(port):
    total = 0
    for path in ASSETS:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        if answer.status != 200 or answer.getheader("Content-Encoding") != "gzip":
            raise RuntimeError(f"{path}: {answer.status} {answer.getheader('Content-Encoding')}")
        gzip.decompress(body)
        total += len(body)
    return total / 1024


def summary(name, values, target):
    median = statistics.median(values)
    verdict = "ok" if median <= target else "MISSED"
    return (f"| {name} | {median:.0f} ms (slowest {max(values):.0f}) | <= {target:.0f} ms |"
            f" {verdict} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemon", default="build/release/src/greedylrd")
    parser.add_argument("--dashboard-dir", default="build/release/ui")
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--zooms", type=int, default=20)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="greedylr-dashboard-bench-")
    server = Server([args.daemon, "--db", os.path.join(work, "bench.db"),
                     "--dashboard-dir", args.dashboard_dir, "--log-level", "warn"])
    driver, profile = browser()
    try:
        fill(server, args.reports, args.jobs)
        url = server.url
        page_load(driver, f"{url}/#/job/million", "firstDrawAt")  # warm: caches, the job loaded
        job = [page_load(driver, f"{url}/#/job/million", "firstDrawAt") for _ in range(args.runs)]
        zoom = zooms(driver, args.zooms, args.reports)
        page_load(driver, f"{url}/#/", "firstListedAt")
        listed = [page_load(driver, f"{url}/#/", "firstListedAt") for _ in range(args.runs)]
        kib = compressed_kib(server.port)
        print("| figure | measured | target | |")
        print("|---|---|---|---|")
        log(f"job page: {[round(t) for t in job]} ms; zooms: {[round(t) for t in zoom]} ms; "
            f"list: {[round(t) for t in listed]} ms")
        print(summary(f"job page of a {args.reports:,}-report job: request to chart drawn",
                      job, TARGETS["job_page_ms"]))
        print(summary("zoom re-query and redraw", zoom, TARGETS["zoom_ms"]))
        print(summary(f"list of {args.jobs + 1:,} jobs, first page", listed,
                      TARGETS["list_page_ms"]))
        verdict = "ok" if kib <= TARGETS["assets_kib"] else "MISSED"
        print(f"| JavaScript and CSS served, compressed | {kib:.1f} KiB | <= 200 KiB | {verdict} |")
    finally:
        driver.quit()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
