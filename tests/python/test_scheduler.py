"""greedylr.RemoteScheduler with real torch optimizers against a real greedylrd."""

import math

import pytest
import torch

import greedylr

torch.set_num_threads(1)


def make_optimizer(lr=0.1, groups=1):
    """An SGD optimizer over a small model, with one param group per layer asked."""
    layers = [torch.nn.Linear(3, 3) for _ in range(groups)]
    if groups == 1:
        return torch.optim.SGD(layers[0].parameters(), lr=lr)
    return torch.optim.SGD([{"params": layer.parameters(), "lr": lr * (n + 1)}
                            for n, layer in enumerate(layers)], lr=lr)


def test_step_sets_the_lr_the_service_answers(daemon, client, job_id):
    optimizer = make_optimizer(0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=2)
    assert scheduler.last_epoch == 0 and scheduler.get_last_lr() == [0.1]
    for loss in [2.3, 2.1, 1.95]:
        scheduler.step(loss)
    assert optimizer.param_groups[0]["lr"] == 0.10526315789473685
    assert scheduler.get_last_lr() == [0.10526315789473685] and scheduler.last_epoch == 3
    assert scheduler.last_answer["event"] == "increase"
    assert [p["lr"] for p in client.history(job_id)][-1] == 0.10526315789473685
    assert client.get_job(job_id)["config"]["patience"] == 2


def test_the_plateau_policy_matches_torch_exactly(daemon, job_id):
    ours, theirs = make_optimizer(0.1), make_optimizer(0.1)
    remote = greedylr.RemoteScheduler(ours, job_id, url=daemon.url, policy="plateau",
                                      patience=1, factor=0.5, cooldown=1)
    local = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, patience=1, factor=0.5,
                                                        cooldown=1)
    losses = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.86, 0.87, 0.88, 0.5, 0.6, 0.7, 0.8]
    for loss in losses:
        remote.step(loss)
        local.step(loss)
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    assert ours.param_groups[0]["lr"] < 0.1 / 4


def test_tensor_metrics_and_diverged_steps(daemon, client, job_id):
    scheduler = greedylr.RemoteScheduler(make_optimizer(), job_id, url=daemon.url)
    scheduler.step(torch.tensor(1.5))
    scheduler.step(torch.tensor(2.5, requires_grad=True) * 1)
    scheduler.step(torch.tensor(float("nan")))
    scheduler.step(float("inf"))
    losses = [p["loss"] for p in client.history(job_id)]
    assert losses[:2] == [1.5, 2.5] and math.isnan(losses[2]) and losses[3] == math.inf


def test_one_lr_per_param_group(daemon, client, job_id):
    optimizer = make_optimizer(0.1, groups=2)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=0,
                                         min_lr=[0.01, 0.02])
    assert client.get_job(job_id)["initial_lr"] == [0.1, 0.2]
    scheduler.step(1.0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1 / 0.95, 0.2 / 0.95]
    assert scheduler.get_last_lr() == client.history(job_id)[0]["lr"]


def test_the_initial_lr_may_be_given(daemon, client, job_id):
    optimizer = make_optimizer(0.1, groups=2)
    greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, lr=0.05)
    assert client.get_job(job_id)["initial_lr"] == [0.05, 0.05]
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.05]
    with pytest.raises(ValueError):
        greedylr.RemoteScheduler(optimizer, job_id + "-x", url=daemon.url, lr=[0.1])


def test_a_schedule_steps_without_a_metric(daemon, job_id):
    optimizer = make_optimizer(1.0)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, policy="step",
                                         step_size=2, gamma=0.5)
    for _ in range(4):
        scheduler.step()
    assert scheduler.get_last_lr() == [0.25]
    greedy = greedylr.RemoteScheduler(make_optimizer(), job_id + "-g", url=daemon.url)
    with pytest.raises(TypeError):
        greedy.step()


def test_a_zero_lr_comes_back_as_a_float(daemon, client, job_id):
    """The service writes a zero lr as JSON 0; every lr the client hands out is a float."""
    optimizer = make_optimizer(0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, policy="linear",
                                         total_steps=2, start_factor=1.0, end_factor=0.0)
    scheduler.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.0]
    assert type(scheduler.get_last_lr()[0]) is float
    assert type(optimizer.param_groups[0]["lr"]) is float
    assert type(client.get_lr(job_id, 1)["lr"]) is float
    assert type(client.history(job_id)[-1]["lr"]) is float
    assert type(client.get_job(job_id)["lr"]) is float


def test_another_config_for_the_same_job_names_the_differences(daemon, job_id):
    greedylr.RemoteScheduler(make_optimizer(0.1), job_id, url=daemon.url, patience=3)
    with pytest.raises(greedylr.Conflict) as caught:
        greedylr.RemoteScheduler(make_optimizer(0.2), job_id, url=daemon.url, patience=4)
    detail = caught.value.detail
    assert "lr 0.1 (yours 0.2)" in detail and "patience=3 (yours 4)" in detail
    assert caught.value.status == 409


def test_verbose_is_no_difference(daemon, client, job_id):
    """verbose, accepted as transformers' GreedyLR takes it, never makes a Conflict."""
    greedylr.RemoteScheduler(make_optimizer(0.1), job_id, url=daemon.url, patience=3)
    scheduler = greedylr.RemoteScheduler(make_optimizer(0.1), job_id, url=daemon.url,
                                         patience=3, verbose=True)
    assert scheduler.get_last_lr() == [0.1]
    request = {"policy": "greedylr", "lr": 0.1, "config": {"patience": 3, "verbose": True}}
    assert greedylr.scheduler.differences(client.get_job(job_id), request) == []
    request["config"]["patience"] = 4
    assert greedylr.scheduler.differences(client.get_job(job_id), request) == [
        "config patience=3 (yours 4)"]


def test_state_dict_and_load_state_dict_rewind_the_job(daemon, client, job_id):
    losses = [2.0, 1.9, 1.8, 1.7, 1.9, 2.0, 2.1, 1.6, 1.5, 1.4]
    optimizer = make_optimizer(0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=1)
    lrs = []
    for step, loss in enumerate(losses):
        if step == 4:
            saved = scheduler.state_dict()
        scheduler.step(loss)
        lrs.append(scheduler.get_last_lr()[0])
    assert saved["last_epoch"] == 4 and saved["_last_lr"] == [lrs[3]]
    # A new process: a new optimizer and scheduler on the same job, then the checkpoint.
    optimizer = make_optimizer(0.1)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=1)
    assert scheduler.last_epoch == 10  # the job continues where it is
    scheduler.load_state_dict(saved)
    assert scheduler.last_epoch == 4 and optimizer.param_groups[0]["lr"] == lrs[3]
    assert client.get_job(job_id)["last_step"] == 3
    again = []
    for loss in [1.95, 2.05, 2.15]:  # other losses than the first time: no conflict
        scheduler.step(loss)
        again.append(scheduler.get_last_lr()[0])
    assert [p["loss"] for p in client.history(job_id)] == losses[:4] + [1.95, 2.05, 2.15]
    with pytest.raises(ValueError):
        scheduler.load_state_dict(dict(saved, job_id="another"))


def test_loading_a_state_from_before_the_first_step(daemon, client, job_id):
    scheduler = greedylr.RemoteScheduler(make_optimizer(), job_id, url=daemon.url)
    saved = scheduler.state_dict()
    scheduler.step(1.0)
    scheduler.load_state_dict(saved)
    assert scheduler.last_epoch == 0 and client.get_job(job_id)["last_step"] is None


def test_a_finished_training_marks_the_job(daemon, client, job_id):
    scheduler = greedylr.RemoteScheduler(make_optimizer(), job_id, url=daemon.url)
    scheduler.step(1.0)
    assert scheduler.finish()["status"] == "finished"
    with pytest.raises(greedylr.Conflict):
        scheduler.step(0.5)


def test_the_auto_policy_anneals_over_total_steps_and_keeps_under_the_cap(daemon, client,
                                                                          job_id):
    """policy="auto" with total_steps= and a per-step lr_cap, as in the README: the answers
    are those of the independent model of the policy, the cap holds, and the run ends at 0."""
    import auto_model  # tests/auto_model.py, on the path conftest.py sets

    optimizer = make_optimizer(0.5)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, policy="auto",
                                         total_steps=40)
    model = auto_model.Auto(0.5, {"total_steps": 40})
    for k in range(40):
        loss = 3.0 / (1 + k) + 0.01 * math.sin(k)
        cap = 0.2 if 10 <= k < 20 else None
        scheduler.step(torch.tensor(loss), lr_cap=cap)
        lr, event = model.step(k, loss, cap)
        assert scheduler.get_last_lr() == [lr] and scheduler.last_answer["event"] == event
        if cap is not None:
            assert optimizer.param_groups[0]["lr"] <= cap
    assert optimizer.param_groups[0]["lr"] == 0.0
    job = client.get_job(job_id)
    assert job["config"]["total_steps"] == 40 and job["config"]["version"] == 1
    assert [p.get("lr_cap") for p in client.history(job_id)][10:20] == [0.2] * 10


def test_a_cap_for_a_policy_that_takes_none_is_refused(daemon, job_id):
    scheduler = greedylr.RemoteScheduler(make_optimizer(), job_id, url=daemon.url)
    with pytest.raises(greedylr.InvalidValue, match="lr_cap"):
        scheduler.step(1.0, lr_cap=0.01)
