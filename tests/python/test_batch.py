"""Batches of reports (POST /v1/reports) through a real greedylrd and the Python client:
each report answered as alone, each fault its own, every decision committed before the
answer."""

import json
import signal
import socket
import time

import pytest

import greedylr
from conftest import SLOW


def test_a_batch_answers_each_report_as_a_single_report_would(client, job_id):
    client.create_job(job_id + "-a", 0.1, "greedylr", {"patience": 1})
    client.create_job(job_id + "-b", 0.1, "cosine", {"t_max": 4})
    client.create_job(job_id + "-single", 0.1, "greedylr", {"patience": 1})
    losses = [1.0, 0.9, 0.95, 0.97, 0.8]
    batch = [{"job": job_id + "-a", "step": s, "loss": loss} for s, loss in enumerate(losses)]
    batch += [{"job": job_id + "-b", "step": s} for s in range(3)]
    results = client.report_batch(batch)
    single = [client.report(job_id + "-single", s, loss) for s, loss in enumerate(losses)]
    assert [r["lr"] for r in results[:5]] == [r["lr"] for r in single]
    assert [r["event"] for r in results[:5]] == [r["event"] for r in single]
    assert [(r["job"], r["step"]) for r in results[5:]] == [(job_id + "-b", s) for s in range(3)]
    assert client.get_job(job_id + "-a")["last_step"] == 4
    # The same batch again is a retry of each report: the same answers, replayed.
    again = client.report_batch(batch)
    assert [r["lr"] for r in again] == [r["lr"] for r in results]
    assert all(r.get("replayed") for r in again)


def test_each_fault_is_its_reports_own(client, job_id):
    client.create_job(job_id, 0.1)
    results = client.report_batch([
        {"job": job_id, "step": 0, "loss": 1.0},
        {"job": job_id + "-missing", "step": 0, "loss": 1.0},
        {"job": job_id, "step": 0, "loss": 2.0},
        {"job": job_id, "step": 1},
        {"job": job_id, "step": 1, "loss": "NaN"},
    ])
    assert results[0]["step"] == 0 and "problem" not in results[0]
    assert results[1]["problem"]["status"] == 404 and results[1]["job"] == job_id + "-missing"
    assert results[2]["problem"]["status"] == 409
    assert results[3]["problem"]["status"] == 422 and "loss" in results[3]["problem"]["detail"]
    assert results[4]["event"] == "decrease" or "problem" not in results[4]
    raw = client._call("POST", "/v1/reports", body={"reports": [
        {"job": job_id, "step": "x"}, {"step": 2}, 7, {"job": job_id, "step": 9, "rnk": 1}]})
    problems = [r["problem"]["detail"] for r in raw["results"]]
    assert problems[0].startswith("reports[0]: step must be an integer")
    assert problems[1].startswith("reports[1]: job must be a job id")
    assert problems[2] == "reports[2]: a report must be a JSON object"
    assert "did you mean \"rank\"" in problems[3]
    assert [r["step"] for r in raw["results"]] == [None, 2, None, 9]


def test_bad_batches_are_refused_whole(client):
    for body in [{"reports": []}, {"reports": {}}, {"report": []},
                 {"reports": [{"job": "j", "step": 0}] * (greedylr.client.BATCH_MAX + 1)}]:
        with pytest.raises(greedylr.InvalidValue):
            client._call("POST", "/v1/reports", body=body)
    with pytest.raises(ValueError, match="1 to 1000"):
        client.report_batch([])


def test_the_ranks_of_a_step_are_gathered_across_a_batch(client, job_id):
    client.create_job(job_id, 0.1, world_size=2, aggregate="mean")
    results = client.report_batch([{"job": job_id, "step": 0, "loss": 1.0, "rank": 0},
                                   {"job": job_id, "step": 0, "loss": 3.0, "rank": 1}])
    assert results[0]["ranks"] == 2 and results[0]["lr"] == results[1]["lr"]
    assert client.history(job_id)[0]["loss"] == 2.0  # the mean of the two ranks


def test_an_answered_batch_survives_a_crash(own_daemon, job_id):
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        jobs = [f"{job_id}-{k}" for k in range(8)]
        for job in jobs:
            client.create_job(job, 0.1, "auto")
        batch = [{"job": job, "step": s, "loss": 1.0 / (1 + s)} for s in range(16) for job in jobs]
        answered = client.report_batch(batch)
    own_daemon.process.send_signal(signal.SIGKILL)
    own_daemon.process.wait()
    own_daemon.restart()
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        for job in jobs:
            assert client.get_job(job)["last_step"] == 15
        replayed = client.report_batch(batch)
    assert [r["lr"] for r in replayed] == [r["lr"] for r in answered]


def waiting_requests(client):
    text = client._call("GET", "/metrics")
    text = text if isinstance(text, str) else text.decode()
    for line in text.splitlines():
        if line.startswith("greedylr_waiting_requests "):
            return float(line.split()[1])
    raise AssertionError("no greedylr_waiting_requests in /metrics")


def test_a_batch_whose_client_went_away_gives_its_waits_up(client, daemon, job_id):
    client.create_job(job_id, 0.1, world_size=2, aggregate_timeout_ms=600000)
    body = json.dumps({"reports": [{"job": job_id, "step": 0, "loss": 1.0, "rank": 0}]})
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.sendall((f"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    deadline = time.monotonic() + 10 * SLOW
    while waiting_requests(client) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert waiting_requests(client) >= 1
    sock.close()
    while waiting_requests(client) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting_requests(client) == 0
    # The rank's loss stays gathered, as a single report's does: rank 1 decides the step.
    answer = client.report(job_id, 0, 3.0, rank=1)
    assert answer["ranks"] == 2
