#!/usr/bin/python3
"""Writes the seed inputs of the fuzz harnesses into tests/fuzz/corpus/NAME: requests as
the README and the API tests send them, and the golden scheduler configurations. With
--states DAEMON, the saved states too, as the store keeps them: the daemon runs the same
configurations on a scratch database, and each state it writes to a job's row is a seed.

Usage: tests/fuzz/seeds.py [--states BUILDDIR/src/greedylrd]"""
import hashlib
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
GOLDEN = os.path.join(HERE, "..", "data", "schedulers.json")
AUTO_GOLDEN = os.path.join(HERE, "..", "data", "auto.json")
STEPS_MAX = 64  # FUZZ_STEPS_MAX in fuzz.h

ROUTES = {"create": 0, "patch": 1, "report": 2, "rewind": 3, "token": 0x10}
TYPES = {None: 0, "application/json": 1, "merge": 2, "text/plain": 3}


def write(name, data):
    """Stores one input under its SHA-1, as libFuzzer names corpus files."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.join(CORPUS, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def body(route, text, content_type="application/json"):
    write("body", bytes([ROUTES[route] | TYPES[content_type] << 2]) + text.encode("utf-8"))


def query(which, text):
    write("query", bytes([which]) + text.encode("utf-8"))


def golden_cases():
    with open(GOLDEN) as f:
        for case in json.load(f)["cases"]:
            yield {"policy": case["policy"], "lr": case["lr"], "config": case["config"],
                   "losses": case["losses"][:STEPS_MAX]}


def auto_golden_cases():
    """The auto policy's golden cases (their caps are fuzzed through report bodies)."""
    with open(AUTO_GOLDEN) as f:
        for case in json.load(f)["cases"]:
            yield {"policy": "auto", "lr": case["lr"], "config": case["config"],
                   "losses": case["losses"][:STEPS_MAX]}


def handmade_cases():
    losses = [2.3, 2.1, "NaN", 1.9, None, 2.5, 2.6, "Infinity", 1.0, 0.9, 0.95, 1.2]
    yield {"lr": 0.1, "config": {"patience": 2}, "losses": losses}
    yield {"policy": "greedylr", "lr": [0.1, 0.01],
           "config": {"min_lr": [0.001, 0.0001], "max_lr": 1, "smooth": True,
                      "window_size": 4, "warmup": 2, "cooldown": 1, "reset_start": 3},
           "losses": losses}
    yield {"policy": "plateau", "lr": 0.1,
           "config": {"mode": "max", "threshold_mode": "abs", "patience": 1, "factor": 0.5},
           "losses": losses}
    yield {"policy": "auto", "lr": 1e-5, "losses": losses}
    yield {"policy": "auto", "lr": [10, 0.5],
           "config": {"version": 1, "total_steps": 12, "patience": 1, "anneal": "linear",
                      "anneal_start": 0.5, "increase_factor": 100, "max_factor": 1e9,
                      "min_factor": 1, "probe_gain": 1, "probe_until": 1},
           "losses": losses}
    yield {"policy": "constant", "lr": 0.5, "losses": [1, 2]}
    yield {"policy": "step", "lr": 0.1, "config": {"step_size": 3, "gamma": 0.5},
           "losses": losses}
    yield {"policy": "exponential", "lr": 0.1, "config": {"gamma": 0.9}, "losses": losses}
    yield {"policy": "cosine", "lr": 0.1, "config": {"t_max": 5, "eta_min": 0.001,
                                                       "warmup_steps": 2}, "losses": losses}
    yield {"policy": "linear", "lr": [0.1, 0.2],
           "config": {"total_steps": 6, "start_factor": 1, "end_factor": 0.1},
           "losses": losses}
    yield {"policy": "multistep", "lr": 0.1, "config": {"milestones": [4, 2, 4], "gamma": 0.5},
           "losses": losses}
    yield {"policy": "constant_factor", "lr": 0.1, "config": {"factor": 0.25,
                                                             "total_iters": 3},
           "losses": losses}
    yield {"policy": "polynomial", "lr": 0.1, "config": {"total_iters": 7, "power": 0.5},
           "losses": losses}
    yield {"policy": "cosine", "lr": 0.1, "config": {"t_max": 4, "periodic": True},
           "losses": losses}
    yield {"policy": "cosine_restarts", "lr": [0.1, 0.3],
           "config": {"t_0": 2, "t_mult": 3, "eta_min": 0.01}, "losses": losses}
    yield {"policy": "onecycle", "lr": [0.1, 0.3],
           "config": {"total_steps": 8, "max_lr": [1, 2], "anneal_strategy": "linear",
                      "three_phase": True, "pct_start": 0.4}, "losses": losses}
    yield {"policy": "sequence", "lr": 0.1,
           "config": {"schedules": [{"policy": "linear", "config": {"total_steps": 3,
                                                                    "start_factor": 0.1,
                                                                    "end_factor": 1}},
                                    {"policy": "greedylr", "config": {"patience": 1}},
                                    {"policy": "auto"}],
                      "milestones": [3, 8]},
           "losses": losses}


def far_cases():
    """Time-based policies taken far along: "steps" numbers the harness's steps."""
    steps = [0, 3, 1000, 10**9, 10**12, 10**15 - 1, 10**15]
    losses = [1.0] * len(steps)
    for policy, config in [("step", {"step_size": 7, "gamma": 1.5}),
                           ("exponential", {"gamma": 1.01, "warmup_steps": 100}),
                           ("cosine", {"t_max": 10**9, "eta_min": 0.0001}),
                           ("linear", {"total_steps": 10**9, "end_factor": 2}),
                           ("cosine_restarts", {"t_0": 3, "t_mult": 2}),
                           ("onecycle", {"total_steps": 10**9}),
                           ("multistep", {"milestones": [3, 10**9], "gamma": 1e-3}),
                           ("polynomial", {"total_iters": 10**9, "power": 3})]:
        yield {"policy": policy, "lr": 0.1, "config": config, "losses": losses,
               "steps": steps}


def http_json(port, method, path, payload):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=json.dumps(payload),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def stored_row(db, job, losses):
    """A job's stored row (policy, lr, config, state) and the losses after its state."""
    with sqlite3.connect(db) as conn:
        policy, lr, config, state, last_step = conn.execute(
            "SELECT policy, initial_lr, config, state, last_step FROM jobs WHERE id = ?",
            (job,)).fetchone()
    first = 0 if last_step is None else last_step + 1
    return (policy, lr, config, state), losses[first:]


def stored_states(daemon, cases):
    """Runs each case as a job and yields (case, stored row, losses still to come)."""
    with tempfile.TemporaryDirectory() as scratch:
        db = os.path.join(scratch, "seeds.db")
        process = subprocess.Popen([daemon, "--listen", "127.0.0.1:0", "--db", db],
                                   stdout=subprocess.PIPE, text=True)
        try:
            port = int(process.stdout.readline().strip().rsplit(":", 1)[1])
            for n, case in enumerate(cases):
                job = f"seed-{n}"
                spec = {k: v for k, v in case.items() if k != "losses"}
                if http_json(port, "PUT", f"/v1/jobs/{job}", spec) not in (200, 201):
                    continue
                losses = case["losses"]
                # The daemon writes a job's state to its row every few dozen reports (and
                # at creation): each state written is a seed.
                seen = None
                for step, loss in enumerate([None] + losses):
                    if loss is not None:
                        http_json(port, "POST", f"/v1/jobs/{job}/reports",
                                  {"step": step - 1, "loss": loss})
                    row, rest = stored_row(db, job, losses)
                    if row != seen:
                        seen = row
                        yield row, rest
        finally:
            process.terminate()
            process.wait()


def main():
    cases = list(golden_cases()) + list(auto_golden_cases()) + list(handmade_cases())
    if len(sys.argv) == 3 and sys.argv[1] == "--states":
        for (policy, lr, config, state), rest in stored_states(sys.argv[2], cases):
            write("state", json.dumps({"policy": policy, "lr": json.loads(lr),
                                       "config": json.loads(config),
                                       "state": json.loads(state), "losses": rest[:8]}))
        return
    for case in cases + list(far_cases()):
        write("config", json.dumps(case))

    body("create", '{"lr": 0.1, "config": {"patience": 2}}')
    body("create", '{"lr": 0.1, "world_size": 2}')
    body("create", '{"policy": "plateau", "lr": [0.1, 0.01], "tags": {"team": "nlp"}, '
                   '"aggregate": "max", "aggregate_timeout_ms": 5000}')
    for case in cases[-8:]:
        body("create", json.dumps({k: v for k, v in case.items() if k not in ("losses", "steps")}))
    body("create", '{"lr": 0.1, "id": "mine"}')
    body("create", '', None)
    body("create", '{"lr": 0.1}', "text/plain")
    body("create", '[1, 2]', "merge")
    body("create", '{"lr": 0.1} x')
    body("create", '[' * 40 + ']' * 40)
    body("patch", '{"status": "finished"}')
    body("patch", '{"tags": {"team": "vision", "run": "7"}}')
    body("patch", '{"color": "red"}')
    body("patch", '{}')
    body("report", '{"step": 0, "loss": 2.30}')
    body("report", '{"step": 0, "rank": 1, "loss": 2.29}')
    body("report", '{"step": 7, "loss": null}')
    body("report", '{"step": 8, "loss": "-Infinity"}', "merge")
    body("report", '{"step": 1e15, "loss": 1e308}')
    body("report", '{"step": 100, "loss": 1.0, "epoch": 1}')
    body("report", '{"step": -1, "loss": 1}')
    body("report", '{"step": 3, "loss": 0.5, "lr_cap": 0.01}')
    body("report", '{"step": 3, "loss": 0.5, "lr_cap": 0}')
    body("report", '{"step": 3, "loss": 0.5, "lr_cap": "Infinity", "rank": 2}')
    body("rewind", '{"to_step": 1000}')
    body("rewind", '{"to_step": -1}')
    body("rewind", '{"to_step": 1.5}')
    body("rewind", '{"to_step": 1, "force": true}')
    body("token", '{"role": "writer", "name": "trainer-7"}')
    body("token", '{"role": "admin"}')
    body("token", '{"role": "root"}')
    body("token", '{"role": "reader", "name": 7}')

    query(0, "page_size=10&status=running&tag=team:nlp")
    query(0, "page_token=abc&status=finished")
    query(0, "tag=nocolon")
    query(1, "from_step=0&to_step=1000&page_size=100")
    query(1, "format=csv")
    query(1, "max_points=500&format=json&page_token=xyz")
    query(1, "from_step=9&to_step=3")
    query(2, "step=0&wait_ms=30000")
    query(2, "step=99999999999999999999")
    query(2, "wait_ms=1")
    query(3, "application/json; charset=utf-8")
    query(3, "application/problem+json")
    query(3, "text/plain")


if __name__ == "__main__":
    main()
