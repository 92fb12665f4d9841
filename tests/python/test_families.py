"""Families of runs through a real greedylrd: outcomes, tuned settings, and the families
routes, as the Python client sees them."""

import json
import math
import subprocess
import threading

import pytest

import glrdaemon
import greedylr
from conftest import SLOW


def family_of(job_id):
    """A family name no other test uses."""
    return "fam-" + job_id[-40:]


def run(client, job_id, losses):
    for step, loss in enumerate(losses):
        client.report(job_id, step, loss)


def test_a_finished_job_has_its_last_loss_as_outcome(client, job_id):
    client.create_job(job_id, 0.1, family=family_of(job_id))
    run(client, job_id, [2.0, 1.0, 1.5])
    job = client.finish(job_id)
    assert job["family"] == family_of(job_id)
    assert job["outcome"] == {"value": 1.5, "source": "last_loss", "last_loss": 1.5,
                              "best_loss": 1.0}
    # A test loss given later replaces it; the losses it ended with stay.
    job = client.finish(job_id, outcome=0.75)
    assert job["outcome"]["value"] == 0.75 and job["outcome"]["source"] == "given"
    assert client.get_job(job_id)["outcome"]["last_loss"] == 1.5


def test_a_run_that_ended_diverged_has_the_worst_outcome(client, job_id):
    client.create_job(job_id, 0.1, "auto")
    run(client, job_id, [2.0, 1.0, math.nan])
    outcome = client.finish(job_id)["outcome"]
    assert outcome["value"] == "Infinity" and outcome["last_loss"] == "NaN"
    assert outcome["best_loss"] == 1.0


def test_a_rewind_runs_the_job_again_without_an_outcome(client, job_id):
    client.create_job(job_id, 0.1)
    run(client, job_id, [2.0, 1.0])
    assert client.finish(job_id)["outcome"]["value"] == 1.0
    job = client.rewind(job_id, 0)
    assert job["status"] == "running" and job["outcome"] is None
    client.report(job_id, 1, 0.5)
    assert client.finish(job_id)["outcome"]["value"] == 0.5


def test_bad_outcomes_and_tuning_requests_are_refused(client, job_id):
    client.create_job(job_id, 0.1)
    with pytest.raises(greedylr.Conflict, match="running"):
        client._call("PATCH", f"/v1/jobs/{job_id}", body={"outcome": 1.0})
    with pytest.raises(greedylr.InvalidValue, match="outcome"):
        client._call("PATCH", f"/v1/jobs/{job_id}", body={"status": "finished",
                                                          "outcome": "NaN"})
    with pytest.raises(greedylr.InvalidValue, match="tune needs a family"):
        client.create_job(job_id + "-t", 0.1, tune=True)
    with pytest.raises(greedylr.InvalidValue, match="cannot be tuned"):
        client.create_job(job_id + "-t", 0.1, "cosine", {"t_max": 5}, family="f", tune=True)
    with pytest.raises(greedylr.NotFound):
        client.family("no-such-family")


def test_the_first_tuned_job_gets_the_defaults_and_the_next_learns(client, job_id):
    family = family_of(job_id)
    first = client.create_job(job_id + "-1", 0.1, family=family, tune=True)
    assert first["policy"] == "auto" and first["lr"] == 0.1
    assert first["tuned"]["settings"] == {"lr_factor": 1, "decrease_factor": 0.5,
                                          "probe_until": 0.5}
    assert "defaults" in first["tuned"]["reason"]
    # The same request again (a retry, or every rank) is the same job.
    assert client.create_job(job_id + "-1", 0.1, family=family, tune=True)["id"] == first["id"]
    run(client, job_id + "-1", [2.0, 1.0, 0.5])
    client.finish(job_id + "-1")
    second = client.create_job(job_id + "-2", 0.1, family=family, tune=True)
    tuned = second["tuned"]
    assert tuned["from_jobs"] == 1 and tuned["expected_outcome"] > 0
    low, high = tuned["expected_range"]
    assert low < tuned["expected_outcome"] < high
    # The tuned lr factor and settings are what the job runs with.
    assert second["lr"] == pytest.approx(0.1 * tuned["settings"]["lr_factor"])
    assert second["config"]["decrease_factor"] == tuned["settings"]["decrease_factor"]
    view = client.family(family)
    assert view["jobs"] == 2 and view["finished"] == 1
    assert view["tuning"]["best"]["job"] == job_id + "-1"
    assert [f["name"] for f in client.families() if f["name"] == family] == [family]
    assert {j["id"] for j in client.list_jobs(family=family)} == {job_id + "-1", job_id + "-2"}


def test_a_sweep_started_at_once_gets_different_settings(client, job_id, daemon):
    family = family_of(job_id)
    jobs, failures = {}, []

    def create(k):
        try:
            with greedylr.Client(daemon.url, timeout=10 * SLOW) as own:
                jobs[k] = own.create_job(f"{job_id}-{k}", 0.01, "greedylr", family=family,
                                         tune=True)
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    settings = {tuple(sorted(job["tuned"]["settings"].items())) for job in jobs.values()}
    assert len(settings) == 8


def test_a_tuned_job_keeps_its_settings_across_a_restart(own_daemon, job_id):
    family = family_of(job_id)
    losses = [2.0, 1.5, 1.2, 1.1, 1.15, 1.2, 1.0]
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        client.create_job(job_id + "-done", 0.1, family=family, tune=True)
        run(client, job_id + "-done", losses)
        client.finish(job_id + "-done", outcome=3.0)
        made = client.create_job(job_id, 0.1, family=family, tune=True)
        before = [client.report(job_id, s, loss)["lr"] for s, loss in enumerate(losses[:4])]
    assert own_daemon.stop() == 0
    own_daemon.restart()
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        again = client.get_job(job_id)
        assert again["tuned"] == made["tuned"] and again["initial_lr"] == made["initial_lr"]
        after = [client.report(job_id, s, loss)["lr"] for s, loss in enumerate(losses)
                 if s >= 4]
        # A job of the same settings made by hand answers the same, step for step.
        plain = client.create_job(job_id + "-plain", made["initial_lr"], "auto",
                                  made["config"])
        expected = [client.report(plain["id"], s, loss)["lr"] for s, loss in enumerate(losses)]
    assert before + after == expected


def test_remote_scheduler_takes_the_tuned_lr(daemon, job_id):
    torch = pytest.importorskip("torch")
    family = family_of(job_id)
    with greedylr.Client(daemon.url) as client:
        running = client.create_job(job_id + "-0", 0.1, family=family, tune=True)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, daemon.url, family=family,
                                         tune=True)
    assert scheduler.policy == "auto"
    settings = scheduler.job["tuned"]["settings"]
    assert settings != running["tuned"]["settings"]  # the running job -0 has the defaults
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * settings["lr_factor"])
    scheduler.step(1.0)
    job = scheduler.finish(outcome=0.25)
    assert job["outcome"]["value"] == 0.25


def train_toy(client, job, steps):
    """A toy training through the service: the loss falls by a tenth of min(lr, 0.4 - lr)
    a step, fastest at lr 0.2. Returns the lrs answered."""
    lr, loss, lrs = client.get_job(job)["lr"], 1.0, []
    for step in range(steps):
        loss *= 1 - 0.1 * min(lr, 0.4 - lr)
        lr = client.report(job, step, loss)["lr"]
        lrs.append(lr)
    return lrs


def finished_runs(client, family, prefix, factors, steps=30):
    """Finished runs of family, created at lr 0.1 and held at 0.1 times each factor (linear
    with equal start and end factors), each outcome its last loss."""
    for k, factor in enumerate(factors):
        job = f"{prefix}-{k}"
        client.create_job(job, 0.1, "linear", {"start_factor": factor, "end_factor": factor,
                                               "total_steps": steps}, family=family)
        train_toy(client, job, steps)
        client.finish(job)


def test_a_learned_job_runs_the_model_its_family_learned(client, job_id):
    family = family_of(job_id)
    # Before a model: auto, and the job says why.
    finished_runs(client, family, job_id + "-r", [1, 2])
    early = client.create_job(job_id + "-early", 0.1, "learned", {"total_steps": 30},
                              family=family)
    assert early["policy"] == "auto" and early["tuned"]["fallback"] == "auto"
    assert "no learned model" in early["tuned"]["reason"]
    with pytest.raises(greedylr.InvalidValue, match="learning needs 3"):
        client.learn(family)
    finished_runs(client, family, job_id + "-s", [0.5, 4])
    model = client.learn(family)
    assert model["version"] == 1 and model["family"] == family
    assert sorted(model["trained_on"]) == sorted(
        [job_id + "-r-0", job_id + "-r-1", job_id + "-s-0", job_id + "-s-1"])
    assert model["fit"]["from_jobs"] == 4 and model["fit"]["effective_runs"] >= 1
    assert client.family(family)["model"]["version"] == 1
    job = client.create_job(job_id + "-L", 0.1, "learned", {"total_steps": 30}, family=family)
    assert job["policy"] == "learned" and job["config"]["model_version"] == 1
    assert job["config"]["model"] == model["model"]
    assert job["tuned"]["settings"] == {"model_version": 1}
    # The same request again is the same job; a retry of the fallback's too.
    assert client.create_job(job_id + "-L", 0.1, "learned", {"total_steps": 30},
                             family=family)["id"] == job["id"]
    assert client.create_job(job_id + "-early", 0.1, "learned", {"total_steps": 30},
                             family=family)["policy"] == "auto"
    # The best run was at factor 2: the learned lr starts near 0.2, never past 0.4.
    lrs = train_toy(client, job["id"], 30)
    assert 0.12 < lrs[3] < 0.3, lrs
    assert max(lrs) <= 0.4 + 1e-12
    # Learning again makes the next version; the running job keeps its own.
    assert client.learn(family)["version"] == 2
    assert client.get_job(job["id"])["config"]["model_version"] == 1


def test_bad_learned_requests_are_refused(client, job_id):
    with pytest.raises(greedylr.InvalidValue, match="learned needs a family"):
        client.create_job(job_id, 0.1, "learned")
    with pytest.raises(greedylr.InvalidValue, match="is unknown"):
        client.create_job(job_id, 0.1, "learned", family=family_of(job_id))
    with pytest.raises(greedylr.NotFound):
        client.learn(family_of(job_id))
    client.create_job(job_id, 0.1, family=family_of(job_id))
    with pytest.raises(greedylr.InvalidValue, match="config key model is the service's"):
        client.create_job(job_id + "-m", 0.1, "learned", {"model": {}}, family=family_of(job_id))
    with pytest.raises(greedylr.InvalidValue, match="leave tune out"):
        client.create_job(job_id + "-t", 0.1, "learned", family=family_of(job_id), tune=True)


def test_a_learned_job_stays_exact_across_a_restart(own_daemon, job_id):
    family = family_of(job_id)
    losses = [1.0 / (1 + s) + 0.01 * (s % 3) for s in range(20)]
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        finished_runs(client, family, job_id + "-r", [0.5, 1, 2], steps=20)
        client.learn(family)
        client.create_job(job_id, 0.1, "learned", family=family)
        before = [client.report(job_id, s, loss)["lr"] for s, loss in enumerate(losses[:8])]
        # A job of the same model that is never interrupted: what the other must answer.
        client.create_job(job_id + "-whole", 0.1, "learned", family=family)
        whole = [client.report(job_id + "-whole", s, loss)["lr"] for s, loss in enumerate(losses)]
    # Offline learning refuses a database a daemon serves, and learns once it is stopped.
    learn = glrdaemon.wrapper() + [glrdaemon.program(), "learn", "--family", family,
                                   "--db", own_daemon.db]
    refused = subprocess.run(learn, capture_output=True, text=True, timeout=60 * SLOW)
    assert refused.returncode == 1 and "POST /v1/families/" in refused.stderr
    assert own_daemon.stop() == 0
    offline = subprocess.run(learn, capture_output=True, text=True, timeout=60 * SLOW)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["version"] == 2
    own_daemon.restart()
    with greedylr.Client(own_daemon.url, timeout=10 * SLOW) as client:
        # A new model after the restart changes nothing for the job that runs the old one.
        assert client.learn(family)["version"] == 3
        made = client.get_job(job_id)
        assert made["config"]["model_version"] == 1
        after = [client.report(job_id, s, loss)["lr"] for s, loss in enumerate(losses) if s >= 8]
        # The model's horizon is the runs' (20 reports) when the job names none.
        assert made["config"]["total_steps"] == 20
    assert before + after == whole


def test_remote_scheduler_runs_a_learned_model(daemon, job_id):
    import torch

    family = family_of(job_id)
    with greedylr.Client(daemon.url) as client:
        finished_runs(client, family, job_id + "-r", [0.5, 1, 2], steps=10)
        client.learn(family)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, policy="learned",
                                         family=family, total_steps=10)
    assert scheduler.job["policy"] == "learned"
    with pytest.raises(TypeError, match="needs the metric"):
        scheduler.step()
    for loss in [1.0, 0.8, 0.6]:
        scheduler.step(loss)
    assert optimizer.param_groups[0]["lr"] == scheduler.last_answer["lr"]
    scheduler.close()


def test_runs_without_a_horizon_are_read_for_their_length(client, job_id):
    family = family_of(job_id)
    for k in range(3):
        job = f"{job_id}-{k}"
        client.create_job(job, 0.1, "greedylr", {"patience": 2}, family=family)
        train_toy(client, job, 12)
        client.finish(job)
    model = client.learn(family)
    # No job declared total_steps: each run's horizon is the steps its history holds.
    assert model["model"]["horizon"] == 12 and model["fit"]["from_jobs"] == 3
    job = client.create_job(job_id + "-L", 0.1, "learned", family=family)
    assert job["config"]["total_steps"] == 12
