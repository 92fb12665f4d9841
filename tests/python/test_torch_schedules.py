"""The time-based policies against PyTorch's schedulers of the same names.

Each case runs one job on a real greedylrd and torch's scheduler side by side, over two
param groups, and compares every lr: after the report of step s the service answers what
torch's scheduler holds after its (s + 1)-th step().

- Where torch has a closed form (_get_closed_form_lr), the service equals it bit for bit.
- OneCycleLR and CosineAnnealingWarmRestarts compute each lr afresh in step(): the
  service equals step() bit for bit.
- The others' step() multiplies the lr before by a ratio, which rounds differently from
  the closed form in the last bits: the service is within 1e-12 of it (README, "Schedules
  of the step number").
"""

import math

import pytest
import torch

from torch.optim import lr_scheduler as torch_sched

LRS = [0.1, 0.25]
STEPS = 60


def two_group_optimizer():
    layers = [torch.nn.Linear(2, 2) for _ in LRS]
    return torch.optim.SGD([{"params": layer.parameters(), "lr": lr}
                            for layer, lr in zip(layers, LRS)], lr=LRS[0], momentum=0.9)


def service_lrs(client, job_id, policy, config, steps):
    """The job's lr before any report, then after each report of steps 0 .. steps - 1."""
    job = client.create_job(job_id, LRS, policy, config)
    lrs = [list(job["lr"])]
    for step in range(steps):
        lrs.append(list(client.report(job_id, step, None)["lr"]))
    return lrs


def torch_lrs(make, steps):
    """torch's lrs after construction, then after each step()."""
    optimizer = two_group_optimizer()
    scheduler = make(optimizer)
    lrs = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append([group["lr"] for group in optimizer.param_groups])
    return lrs


def closed_forms(make, steps):
    """torch's closed form of the scheduler at positions 0 .. steps."""
    scheduler = make(two_group_optimizer())
    found = []
    for t in range(steps + 1):
        scheduler.last_epoch = t
        found.append(scheduler._get_closed_form_lr())
    return found


def assert_close(ours, theirs, rel=1e-12):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            assert math.isclose(x, y, rel_tol=rel, abs_tol=1e-300), f"t={t}: {x!r} vs {y!r}"


CLOSED_FORM_CASES = {
    "multistep": ({"milestones": [7, 3, 12, 7]},
                  lambda o: torch_sched.MultiStepLR(o, milestones=[7, 3, 12, 7])),
    "multistep-gamma": ({"milestones": [5, 40], "gamma": 0.5},
                        lambda o: torch_sched.MultiStepLR(o, [5, 40], gamma=0.5)),
    "constant_factor": ({}, lambda o: torch_sched.ConstantLR(o)),
    "constant_factor-set": ({"factor": 0.5, "total_iters": 4},
                            lambda o: torch_sched.ConstantLR(o, factor=0.5, total_iters=4)),
    "polynomial": ({}, lambda o: torch_sched.PolynomialLR(o)),
    "polynomial-set": ({"total_iters": 37, "power": 2.5},
                       lambda o: torch_sched.PolynomialLR(o, total_iters=37, power=2.5)),
    "cosine-periodic": ({"t_max": 13, "eta_min": 0.003, "periodic": True},
                        lambda o: torch_sched.CosineAnnealingLR(o, T_max=13, eta_min=0.003)),
    "step": ({"step_size": 7, "gamma": 0.7},
             lambda o: torch_sched.StepLR(o, step_size=7, gamma=0.7)),
    "exponential": ({"gamma": 0.93}, lambda o: torch_sched.ExponentialLR(o, gamma=0.93)),
}


@pytest.mark.parametrize("case", sorted(CLOSED_FORM_CASES))
def test_the_closed_form_of_torch_bit_for_bit(daemon, client, job_id, case):
    config, make = CLOSED_FORM_CASES[case]
    policy = case.split("-")[0]
    ours = service_lrs(client, job_id, policy, config, STEPS)
    assert ours == closed_forms(make, STEPS)
    assert_close(ours, torch_lrs(make, STEPS))


DIRECT_CASES = {
    "cosine_restarts": ({"t_0": 5},
                        lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=5)),
    "cosine_restarts-mult": ({"t_0": 3, "t_mult": 2, "eta_min": 0.001},
                             lambda o: torch_sched.CosineAnnealingWarmRestarts(
                                 o, T_0=3, T_mult=2, eta_min=0.001)),
    "onecycle": ({"max_lr": 0.3, "total_steps": STEPS + 1},
                 lambda o: torch_sched.OneCycleLR(o, max_lr=0.3, total_steps=STEPS + 1)),
    "onecycle-groups": ({"max_lr": [0.3, 0.7], "total_steps": STEPS + 1},
                        lambda o: torch_sched.OneCycleLR(o, max_lr=[0.3, 0.7],
                                                         total_steps=STEPS + 1)),
    "onecycle-linear": ({"max_lr": 0.3, "total_steps": STEPS + 1, "anneal_strategy": "linear",
                         "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100},
                        lambda o: torch_sched.OneCycleLR(
                            o, max_lr=0.3, total_steps=STEPS + 1, anneal_strategy="linear",
                            pct_start=0.25, div_factor=10, final_div_factor=100)),
    "onecycle-three": ({"max_lr": 0.3, "total_steps": STEPS + 1, "three_phase": True},
                       lambda o: torch_sched.OneCycleLR(o, max_lr=0.3, total_steps=STEPS + 1,
                                                        three_phase=True)),
}


@pytest.mark.parametrize("case", sorted(DIRECT_CASES))
def test_what_torch_steps_to_bit_for_bit(daemon, client, job_id, case):
    config, make = DIRECT_CASES[case]
    ours = service_lrs(client, job_id, case.split("-")[0], config, STEPS)
    assert ours == torch_lrs(make, STEPS)


def test_the_default_max_lr_of_onecycle_is_the_job_lr(daemon, client, job_id):
    ours = service_lrs(client, job_id, "onecycle", {"total_steps": 20}, 19)
    assert ours == torch_lrs(lambda o: torch_sched.OneCycleLR(o, max_lr=LRS, total_steps=20), 19)


def test_onecycle_holds_its_last_lr_where_torch_refuses_to_step(daemon, client, job_id):
    make = lambda o: torch_sched.OneCycleLR(o, max_lr=0.3, total_steps=10)  # noqa: E731
    theirs = torch_lrs(make, 9)
    ours = service_lrs(client, job_id, "onecycle", {"max_lr": 0.3, "total_steps": 10}, 30)
    assert ours[:10] == theirs
    assert all(lrs == theirs[9] for lrs in ours[10:])
    with pytest.raises(ValueError):
        torch_lrs(make, 11)


def test_cosine_by_default_stays_at_eta_min_past_t_max(daemon, client, job_id):
    ours = service_lrs(client, job_id, "cosine", {"t_max": 10, "eta_min": 0.01}, 30)
    theirs = torch_lrs(lambda o: torch_sched.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 30)
    assert_close(ours[:11], theirs[:11])
    assert all(lrs == [0.01, 0.01] for lrs in ours[10:])
    assert theirs[20] != ours[20]  # torch's rises again; periodic: true does as well


def test_sequence_chains_torch_schedules(daemon, client, job_id):
    config = {"schedules": [{"policy": "constant_factor",
                             "config": {"factor": 0.1, "total_iters": 2}},
                            {"policy": "exponential", "config": {"gamma": 0.9}},
                            {"policy": "multistep", "config": {"milestones": [3]}}],
              "milestones": [2, 30]}

    def make(optimizer):
        return torch_sched.SequentialLR(optimizer, [
            torch_sched.ConstantLR(optimizer, factor=0.1, total_iters=2),
            torch_sched.ExponentialLR(optimizer, gamma=0.9),
            torch_sched.MultiStepLR(optimizer, milestones=[3])], milestones=[2, 30])

    ours = service_lrs(client, job_id, "sequence", config, STEPS)
    # Each phase is its closed form, counted from its milestone.
    exponential = closed_forms(lambda o: torch_sched.ExponentialLR(o, gamma=0.9), STEPS)
    multistep = closed_forms(lambda o: torch_sched.MultiStepLR(o, milestones=[3]), STEPS)
    constant = closed_forms(lambda o: torch_sched.ConstantLR(o, factor=0.1, total_iters=2), 2)
    expected = constant[:2] + exponential[:28] + multistep[:STEPS - 29]
    assert ours == expected
    assert_close(ours, torch_lrs(make, STEPS))


def test_a_warmup_then_greedylr_is_greedylr_from_its_milestone(daemon, client, job_id):
    losses = [2.0 / (1 + 0.1 * s) + (0.05 if s % 7 == 0 else 0) for s in range(40)]
    warm = {"policy": "linear", "config": {"start_factor": 0.1, "end_factor": 1,
                                           "total_steps": 5}}
    greedy = {"policy": "greedylr", "config": {"patience": 1, "min_lr": 1e-4, "max_lr": 1}}
    client.create_job(job_id, LRS, "sequence", {"schedules": [warm, greedy], "milestones": [5]})
    alone = job_id + "-alone"
    client.create_job(alone, LRS, "greedylr", greedy["config"])
    answers = [client.report(job_id, s, loss)["lr"] for s, loss in enumerate(losses)]
    expected_warmup = [[lr * (0.1 + 0.9 * ((s + 1) / 5)) for lr in LRS] for s in range(4)]
    assert_close(answers[:4], expected_warmup)
    assert answers[4] == LRS  # step 5 starts greedylr at the job's lr
    for s, loss in enumerate(losses[5:]):
        assert answers[5 + s] == client.report(alone, s, loss)["lr"]
    counters = client.get_job(job_id)["state"]
    assert counters["phase"] == 1 and counters["phase_policy"] == "greedylr"


def test_a_sequence_with_a_metric_policy_needs_the_loss(daemon, client, job_id):
    import greedylr

    config = {"schedules": [{"policy": "constant"}, {"policy": "greedylr"}],
              "milestones": [3]}
    client.create_job(job_id, 0.1, "sequence", config)
    with pytest.raises(greedylr.InvalidValue, match="loss is required"):
        client.report(job_id, 0, None)
