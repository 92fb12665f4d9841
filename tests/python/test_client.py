"""greedylr.Client against a real greedylrd: every method, errors, retries, restarts."""

import math
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import greedylr
from conftest import PACKAGE, SLOW, start_daemon, stop_daemon


def test_importing_the_package_does_not_import_torch():
    code = "import sys, greedylr; print('torch' in sys.modules)"
    env = {"PYTHONPATH": PACKAGE, "PYTHONDONTWRITEBYTECODE": "1"}
    answer = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True, check=True)
    assert answer.stdout.strip() == "False"


def test_health(client):
    assert client.health() == {"status": "ok"}


def test_create_is_idempotent_and_a_conflict_says_why(client, job_id):
    job = client.create_job(job_id, 0.1, config={"patience": 2}, tags={"team": "a"})
    assert job["id"] == job_id and job["lr"] == 0.1 and job["config"]["patience"] == 2
    assert job["tags"] == {"team": "a"} and job["last_step"] is None
    again = client.create_job(job_id, 0.1, config={"patience": 2})
    assert again["created_at"] == job["created_at"]
    with pytest.raises(greedylr.Conflict) as caught:
        client.create_job(job_id, 0.1, config={"patience": 3})
    error = caught.value
    assert error.status == 409 and error.title == "Conflict"
    assert job_id in error.detail and error.type == "urn:greedylr:problem:conflict"
    assert error.method == "PUT" and str(error).startswith("409 Conflict: job ")


def test_verbose_is_accepted_not_shown_and_names_no_other_job(client, job_id):
    """transformers' GreedyLR takes verbose (it only logs there); here it changes nothing."""
    job = client.create_job(job_id, 0.1, config={"patience": 2, "verbose": True})
    assert "verbose" not in job["config"]
    for verbose in (False, True):
        again = client.create_job(job_id, 0.1, config={"patience": 2, "verbose": verbose})
        assert again["created_at"] == job["created_at"] and again["config"] == job["config"]
    assert client.create_job(job_id, 0.1, config={"patience": 2})["config"] == job["config"]
    with pytest.raises(greedylr.InvalidValue) as caught:
        client.create_job(job_id + "-x", 0.1, config={"verbose": "yes"})
    assert caught.value.status == 422 and "verbose must be true or false" in caught.value.detail


def test_best_is_null_until_the_first_finite_loss(client, job_id):
    client.create_job(job_id, 0.1, config={"patience": 5})
    assert client.get_job(job_id)["state"]["best"] is None
    client.report(job_id, 0, float("nan"))
    client.report(job_id, 1, float("-inf"))
    assert client.get_job(job_id)["state"]["best"] is None
    client.report(job_id, 2, 2.5)
    assert client.get_job(job_id)["state"]["best"] == 2.5


def test_create_with_an_id_the_service_makes(client):
    job = client.create_job(None, 0.05, policy="cosine", config={"t_max": 10})
    assert job["id"].startswith("job-") and job["policy"] == "cosine"
    assert client.get_job(job["id"])["config"]["t_max"] == 10
    client.delete(job["id"])


def test_invalid_values_raise_invalid_value_naming_the_field(client, job_id):
    with pytest.raises(greedylr.InvalidValue) as caught:
        client.create_job(job_id, 0.1, config={"patiense": 2})
    assert caught.value.status == 422 and "patiense" in caught.value.detail
    assert isinstance(caught.value, ValueError)
    with pytest.raises(greedylr.InvalidValue):
        client.create_job(job_id, -1.0)


def test_get_and_delete(client, job_id):
    client.create_job(job_id, 0.1)
    assert client.get_job(job_id)["status"] == "running"
    client.delete(job_id)
    with pytest.raises(greedylr.NotFound) as caught:
        client.get_job(job_id)
    assert caught.value.status == 404 and job_id in caught.value.detail
    with pytest.raises(greedylr.NotFound):
        client.delete(job_id)


def test_list_jobs_goes_through_every_page(client, job_id):
    names = [f"{job_id}-{n}" for n in range(7)]
    for name in names:
        client.create_job(name, 0.1, tags={"listing": job_id})
    listed = list(client.list_jobs(tag=f"listing:{job_id}", page_size=3))
    assert [job["id"] for job in listed] == names
    client.finish(names[2])
    finished = client.list_jobs(status="finished", tag=("listing", job_id), page_size=2)
    assert [job["id"] for job in finished] == [names[2]]
    assert len(list(client.list_jobs(page_size=2))) >= 7


def test_report_answers_the_exact_lr_and_retries_are_replayed(client, job_id):
    client.create_job(job_id, 0.1, config={"patience": 2})
    answers = [client.report(job_id, step, loss) for step, loss in enumerate([2.3, 2.1, 1.95])]
    assert [a["event"] for a in answers] == ["hold", "hold", "increase"]
    assert answers[2]["lr"] == 0.1 / 0.95 == 0.10526315789473685
    again = client.report(job_id, 2, 1.95)
    assert again["replayed"] is True and again["lr"] == answers[2]["lr"]
    with pytest.raises(greedylr.Conflict):
        client.report(job_id, 2, 1.5)


def test_report_takes_tensor_like_losses_and_non_finite_ones(client, job_id):
    class Scalar:  # what a one-element tensor or a numpy scalar offers
        def __float__(self):
            return 1.25

    client.create_job(job_id, 0.1)
    client.report(job_id, 0, Scalar())
    for step, loss in enumerate([math.nan, math.inf, -math.inf], start=1):
        assert client.report(job_id, step, loss)["event"] in ("hold", "decrease")
    # None is no loss at all, which a policy that reads the loss refuses.
    with pytest.raises(greedylr.InvalidValue, match="loss is required"):
        client.report(job_id, 4, None)
    losses = [point["loss"] for point in client.history(job_id)]
    assert losses[0] == 1.25 and math.isnan(losses[1])
    assert losses[2:4] == [math.inf, -math.inf]


def test_several_param_groups_answer_one_lr_each(client, job_id):
    job = client.create_job(job_id, [0.1, 0.01], config={"patience": 0, "min_lr": 0.001})
    assert job["lr"] == [0.1, 0.01]
    answer = client.report(job_id, 0, 1.0)
    assert answer["lr"] == [0.1 / 0.95, 0.01 / 0.95]


def test_history_as_json_across_pages_ranges_and_csv(client, job_id):
    client.create_job(job_id, 0.1, config={"patience": 1})
    losses = [3.0 - 0.1 * step for step in range(25)]
    lrs = [client.report(job_id, step, loss)["lr"] for step, loss in enumerate(losses)]
    points = client.history(job_id, page_size=4)
    assert [p["step"] for p in points] == list(range(25))
    assert [p["loss"] for p in points] == losses and [p["lr"] for p in points] == lrs
    assert [p["step"] for p in client.history(job_id, from_step=5, to_step=9)] == [5, 6, 7, 8, 9]
    assert len(client.history(job_id, max_points=6)) <= 6
    assert len(client.history(job_id, page_size=4, page_token=None)) == 25
    csv = client.history(job_id, format="csv")
    rows = csv.splitlines()
    assert rows[0] == "step,loss,lr,event" and len(rows) == 26
    assert rows[3].split(",")[2] == repr(lrs[2])


def test_finish_and_tags(client, job_id):
    client.create_job(job_id, 0.1, tags={"a": "1"})
    assert client.set_tags(job_id, {"b": "2"})["tags"] == {"b": "2"}
    client.report(job_id, 0, 1.0)
    assert client.finish(job_id)["status"] == "finished"
    with pytest.raises(greedylr.Conflict) as caught:
        client.report(job_id, 1, 1.0)
    assert "finished" in caught.value.detail


def test_rewind_gives_the_same_lrs_again(client, job_id):
    client.create_job(job_id, 0.1, config={"patience": 1})
    losses = [2.0, 1.8, 1.7, 1.9, 2.0, 2.1, 1.5, 1.4]
    first = [client.report(job_id, step, loss)["lr"] for step, loss in enumerate(losses)]
    job = client.rewind(job_id, 3)
    assert job["last_step"] == 3 and job["rewinds"] == 1 and job["lr"] == first[3]
    again = [client.report(job_id, step, losses[step])["lr"] for step in range(4, 8)]
    assert again == first[4:]
    assert client.rewind(job_id, -1)["last_step"] is None


def test_get_lr_of_decided_and_undecided_steps(client, job_id):
    client.create_job(job_id, 0.1)
    answer = client.report(job_id, 0, 1.0)
    assert client.get_lr(job_id, 0) == answer
    assert client.get_lr(job_id, 1) is None
    assert client.get_lr(job_id, 1, wait_ms=50) is None


def test_ranks_wait_for_each_other_and_get_the_same_lr(daemon, client, job_id):
    client.create_job(job_id, 0.1, world_size=2, aggregate_timeout_ms=20000 * SLOW)
    answers = {}

    def rank(number, loss):
        with greedylr.Client(daemon.url, timeout=10 * SLOW) as own:
            own.create_job(job_id, 0.1, world_size=2, aggregate_timeout_ms=20000 * SLOW)
            answers[number] = own.report(job_id, 0, loss, rank=number)

    threads = [threading.Thread(target=rank, args=(n, 1.0 + n)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[0]["lr"] == answers[1]["lr"] and answers[0]["ranks"] == 2
    assert client.history(job_id)[0]["loss"] == 1.5


def test_a_report_waiting_too_long_times_out(daemon, job_id):
    with greedylr.Client(daemon.url, timeout=10 * SLOW) as setup:
        setup.create_job(job_id, 0.1, world_size=2, aggregate_timeout_ms=60000)
    with greedylr.Client(daemon.url, timeout=10 * SLOW) as impatient:
        with pytest.raises(greedylr.Timeout):
            impatient.report(job_id, 0, 1.0, rank=0, timeout=0.3)
        assert impatient.health() == {"status": "ok"}  # a new connection after the timeout


def test_one_connection_is_kept_alive(client, job_id):
    client.create_job(job_id, 0.1)
    ends = set()
    for step in range(5):
        client.report(job_id, step, 1.0)
        ends.add(client._connection.sock.getsockname())
    assert len(ends) == 1


def test_an_unreachable_service_raises_connection_failed():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with greedylr.Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.05) as client:
        with pytest.raises(greedylr.ConnectionFailed) as caught:
            client.health()
    assert "after 3 attempts" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)
    assert time.monotonic() - started >= 0.15  # 0.05 then 0.1 between the attempts


def test_a_full_job_raises_quota_reached_without_retrying(tmp_path, job_id):
    """A job at --max-reports-per-job answers 507 at once: QuotaReached, not sent again
    (a retry could not succeed), and the steps decided before are still answered."""
    daemon = start_daemon(tmp_path, extra_args=("--max-reports-per-job", "2"))
    try:
        with greedylr.Client(daemon.url, timeout=10 * SLOW, retries=5, backoff=1.0) as client:
            client.create_job(job_id, 0.1)
            client.report(job_id, 0, 2.0)
            client.report(job_id, 1, 1.9)
            started = time.monotonic()
            with pytest.raises(greedylr.QuotaReached) as caught:
                client.report(job_id, 2, 1.8)
            assert time.monotonic() - started < 1.0 * SLOW  # no backoff of 1 s: no retry
            assert caught.value.status == 507
            assert "--max-reports-per-job" in str(caught.value)
            assert client.report(job_id, 1, 1.9)["replayed"]
    finally:
        stop_daemon(daemon)


def test_reports_continue_across_a_daemon_restart(own_daemon, job_id):
    """The client's kept-alive connection dies with the daemon; reports sent while it is
    down are retried until it is back, and the job continues exactly."""
    client = greedylr.Client(own_daemon.url, timeout=10 * SLOW, retries=12, backoff=0.05)
    client.create_job(job_id, 0.1, config={"patience": 1})
    losses = [2.0, 1.9, 1.8, 1.85, 1.9, 1.95, 1.7, 1.6]
    before = [client.report(job_id, step, losses[step])["lr"] for step in range(4)]
    assert own_daemon.stop() == 0
    restarter = threading.Timer(0.5, own_daemon.restart)
    restarter.start()
    after = [client.report(job_id, step, losses[step])["lr"] for step in range(4, 8)]
    restarter.join()
    assert own_daemon.port is not None, "\n".join(own_daemon.log_tail())
    with greedylr.Client(own_daemon.url) as fresh:
        fresh.create_job(job_id + "-fresh", 0.1, config={"patience": 1})
        expected = [fresh.report(job_id + "-fresh", step, loss)["lr"]
                    for step, loss in enumerate(losses)]
    assert before + after == expected
    assert [p["step"] for p in client.history(job_id)] == list(range(8))
    client.close()


def test_a_report_answered_503_at_shutdown_is_sent_again(own_daemon, job_id):
    """Stopping the daemon answers the reports waiting for other ranks 503; the client
    sends them again to the restarted daemon, where the step is then decided."""
    client = greedylr.Client(own_daemon.url, timeout=30 * SLOW, retries=12, backoff=0.05)
    client.create_job(job_id, 0.1, world_size=2, aggregate_timeout_ms=60000)
    statuses = []
    send = client._send

    def recording_send(*args):
        answer = send(*args)
        statuses.append(answer[0])
        return answer

    client._send = recording_send
    answers = {}
    waiting = threading.Thread(target=lambda: answers.update(zero=client.report(job_id, 0, 1.0)))
    waiting.start()
    time.sleep(0.5 * SLOW)  # until rank 0 waits for rank 1
    assert own_daemon.stop() == 0
    assert own_daemon.restart() is not None, "\n".join(own_daemon.log_tail())
    time.sleep(0.5 * SLOW)  # until rank 0 sent its report again
    with greedylr.Client(own_daemon.url, timeout=30 * SLOW) as other:
        answers["one"] = other.report(job_id, 0, 3.0, rank=1)
    waiting.join()
    assert answers["zero"]["lr"] == answers["one"]["lr"] == 0.1
    assert answers["one"]["ranks"] == 2
    assert statuses[0] == 503 and statuses[-1] == 200
    client.close()


def test_errors_pickle_with_their_fields():
    import pickle
    error = greedylr.Conflict(409, "Conflict", "job x is finished", "urn:x", "POST", "/v1/x")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.title, copy.detail, copy.method) == (409, "Conflict",
                                                                    "job x is finished", "POST")


def test_tokens_are_sent_and_their_refusals_raised(tmp_path, job_id):
    """A service with tokens: no token is Unauthorized, a reader writing is Forbidden, a
    writer's token works, and GREEDYLR_TOKEN is the default."""
    import glrdaemon
    from conftest import start_daemon, stop_daemon
    db = tmp_path / "test.db"
    tokens = {}
    for role in ("admin", "reader", "writer"):  # an admin first: the service insists
        made = subprocess.run([glrdaemon.program(), "token", "create", "--db", str(db),
                               "--role", role, "--name", role],
                              capture_output=True, text=True, check=True)
        tokens[role] = made.stdout.strip()
    daemon = start_daemon(tmp_path)
    try:
        with greedylr.Client(daemon.url, timeout=10 * SLOW, token="") as anonymous:
            with pytest.raises(greedylr.Unauthorized) as refused:
                list(anonymous.list_jobs())
            assert refused.value.status == 401
        with greedylr.Client(daemon.url, timeout=10 * SLOW, token=tokens["reader"]) as reader:
            assert list(reader.list_jobs()) == []
            with pytest.raises(greedylr.Forbidden) as refused:
                reader.create_job(job_id, 0.1)
            assert refused.value.status == 403
        with greedylr.Client(daemon.url, timeout=10 * SLOW, token=tokens["writer"]) as writer:
            writer.create_job(job_id, 0.1)
            assert writer.report(job_id, 0, 2.5)["lr"] == 0.1
        old = os.environ.get("GREEDYLR_TOKEN")
        os.environ["GREEDYLR_TOKEN"] = tokens["reader"]
        try:
            with greedylr.Client(daemon.url, timeout=10 * SLOW) as from_environment:
                assert from_environment.get_job(job_id)["last_step"] == 0
        finally:
            if old is None:
                del os.environ["GREEDYLR_TOKEN"]
            else:
                os.environ["GREEDYLR_TOKEN"] = old
    finally:
        stop_daemon(daemon)


def test_history_says_where_the_job_was_rewound(client, job_id):
    client.create_job(job_id, 0.1)
    for step in range(6):
        client.report(job_id, step, 2.0 - 0.1 * step)
    client.rewind(job_id, 2)
    for step in range(3, 5):
        client.report(job_id, step, 1.0)
    client.rewind(job_id, -1)
    page = client._call("GET", f"/v1/jobs/{job_id}/history")
    assert [(r["to_step"], r["from_step"]) for r in page["rewinds"]] == [(2, 5), (-1, 4)]
    # A range that the first rewind's step is not in leaves it out.
    page = client._call("GET", f"/v1/jobs/{job_id}/history", query={"from_step": 3})
    assert page["rewinds"] == []
