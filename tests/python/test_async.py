"""RemoteScheduler(asynchronous=True) against a real greedylrd: the same lrs as the
synchronous mode, failures raised at the next step, checkpoints, close, torch's own
schedulers on the same optimizer, tensor metrics, several ranks, and the exit."""

import importlib.util
import os
import subprocess
import sys
import threading
import warnings

import pytest
import torch

import greedylr
from conftest import EXAMPLES, PACKAGE, SLOW

torch.set_num_threads(1)


def load_example(name):
    """A module of contrib/examples (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the lr of each param group at each of its steps: the lrs the
    training really used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    def step(self, closure=None):
        self.used.append([group["lr"] for group in self.param_groups])
        return super().step(closure)


def small_optimizer(lr=0.1):
    return RecordingSGD(torch.nn.Linear(3, 1).parameters(), lr=lr)


def one_step(optimizer, scale=1.0):
    """A forward and backward pass of the small model, then optimizer.step(); the loss."""
    (parameters,) = [group["params"] for group in optimizer.param_groups]
    weight, bias = parameters
    optimizer.zero_grad()
    loss = ((torch.ones(3) @ weight.t() + bias - scale) ** 2).sum()
    loss.backward()
    optimizer.step()
    return loss


def train_mlp(url, job_id, asynchronous, epochs=10):
    """The MLP of contrib/examples/torch_mlp.py, one report (the batch loss) per optimizer
    step: (the lrs each optimizer.step used, the losses, the scheduler)."""
    mlp = load_example("torch_mlp")
    torch.manual_seed(0)
    x, y = mlp.make_data(768, 0)
    model = torch.nn.Sequential(torch.nn.Linear(mlp.FEATURES, mlp.HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(mlp.HIDDEN, 1))
    optimizer = RecordingSGD(model.parameters(), lr=0.02, momentum=0.9)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, patience=1,
                                         min_lr=0.001, max_lr=0.2, asynchronous=asynchronous)
    order = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(epochs):
        for indices in torch.randperm(len(x), generator=order).split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[indices]), y[indices])
            loss.backward()
            optimizer.step()
            scheduler.step(loss)
            losses.append(loss.item())
    scheduler.close()
    return [lrs[0] for lrs in optimizer.used], losses, scheduler


def test_the_lrs_are_those_of_the_synchronous_mode_step_for_step(daemon, client, job_id):
    sync_lrs, sync_losses, _ = train_mlp(daemon.url, job_id + "-sync", False)
    async_lrs, async_losses, scheduler = train_mlp(daemon.url, job_id + "-async", True)
    assert len(async_lrs) == 120 and len(set(async_lrs)) > 5  # the lr moved, many times
    assert async_lrs == sync_lrs
    assert async_losses == sync_losses
    told = [point["lr"] for point in client.history(job_id + "-async")]
    assert async_lrs[1:] == told[:-1] and scheduler.get_last_lr() == [told[-1]]
    assert scheduler.last_epoch == 120


def test_a_failed_report_raises_at_the_next_optimizer_step(daemon, client, job_id):
    optimizer = small_optimizer()
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, asynchronous=True)
    scheduler.step(one_step(optimizer))
    scheduler.flush()
    client.finish(job_id)
    scheduler.step(one_step(optimizer))  # handed over: the 409 comes back later
    weights = [p.detach().clone() for p in optimizer.param_groups[0]["params"]]
    steps_before = len(optimizer.used)
    with pytest.raises(greedylr.Conflict) as caught:
        one_step(optimizer)
    assert caught.value.status == 409 and "POST" in str(caught.value)
    # The optimizer did not step with an lr the service never gave, and the step is
    # reported again by the next step(), as after a synchronous step() that raised.
    assert len(optimizer.used) == steps_before
    assert all(torch.equal(a, b) for a, b in
               zip(weights, optimizer.param_groups[0]["params"]))
    assert scheduler.last_epoch == 1
    scheduler.step(1.0)
    with pytest.raises(greedylr.Conflict):
        scheduler.step(0.5)  # the next step() raises it too
    assert scheduler.last_epoch == 1
    scheduler.close()


def test_a_stopped_daemon_raises_at_the_next_step_and_retries_reach_a_restarted_one(
        own_daemon, job_id):
    optimizer = small_optimizer()
    client = greedylr.Client(own_daemon.url, timeout=5 * SLOW, retries=1, backoff=0.05)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, client=client, asynchronous=True)
    scheduler.step(2.0)
    scheduler.flush()
    assert own_daemon.stop() == 0
    scheduler.step(1.9)
    with pytest.raises(greedylr.ConnectionFailed):
        scheduler.step(1.8)
    assert scheduler.last_epoch == 1
    # With enough retries the report waits on its thread for the daemon to come back.
    client.retries = 12
    scheduler.step(1.9)
    restarter = threading.Timer(0.3, own_daemon.restart)
    restarter.start()
    one_step(optimizer)
    restarter.join()
    assert own_daemon.port is not None, "\n".join(own_daemon.log_tail())
    scheduler.close()
    assert [p["loss"] for p in client.history(job_id)] == [2.0, 1.9]
    assert optimizer.used[-1] == [client.history(job_id)[0]["lr"]]
    client.close()


def test_state_dict_and_load_state_dict_wait_for_the_report_in_flight(daemon, client,
                                                                        job_id):
    optimizer = small_optimizer()
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=0,
                                         asynchronous=True)
    losses = [2.0, 1.9, 1.8, 1.7, 1.9]
    for loss in losses[:3]:
        scheduler.step(loss)
    saved = scheduler.state_dict()
    assert saved["last_epoch"] == 3
    assert saved["_last_lr"] == [client.history(job_id)[-1]["lr"]]
    for loss in losses[3:]:
        scheduler.step(loss)
    scheduler.load_state_dict(saved)  # the report of step 4 lands before the rewind
    assert client.get_job(job_id)["last_step"] == 2 and scheduler.last_epoch == 3
    assert optimizer.param_groups[0]["lr"] == saved["_last_lr"][0]
    scheduler.step(1.5)
    one_step(optimizer)
    assert [p["loss"] for p in client.history(job_id)] == [2.0, 1.9, 1.8, 1.5]
    assert optimizer.used[-1] == [client.history(job_id)[-1]["lr"]]
    scheduler.close()


def test_close_and_finish_send_the_last_report(daemon, client, job_id):
    optimizer = small_optimizer()
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, asynchronous=True)
    assert "step" in vars(optimizer)
    scheduler.step(2.0)
    scheduler.close()
    assert client.get_job(job_id)["last_step"] == 0
    assert optimizer.param_groups[0]["lr"] == client.history(job_id)[0]["lr"]
    assert "step" not in vars(optimizer) and not scheduler.asynchronous
    scheduler.step(1.9)  # synchronous from now on
    assert client.get_job(job_id)["last_step"] == 1

    other = greedylr.RemoteScheduler(small_optimizer(), job_id + "-f", url=daemon.url,
                                     asynchronous=True)
    other.step(1.0)
    assert other.finish()["status"] == "finished"
    assert client.history(job_id + "-f")[0]["loss"] == 1.0


def test_an_unclosed_scheduler_sends_its_last_report_at_exit(daemon, client, job_id):
    code = (f"import greedylr, torch\n"
            f"o = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)\n"
            f"s = greedylr.RemoteScheduler(o, {job_id!r}, url={daemon.url!r},"
            f" asynchronous=True)\n"
            f"s.step(3.0)\ns.step(2.0)\n")
    env = dict(os.environ, PYTHONPATH=PACKAGE, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60 * SLOW)
    assert [p["loss"] for p in client.history(job_id)] == [3.0, 2.0]


@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-first", "ours-first"])
def test_a_torch_scheduler_on_the_same_optimizer(daemon, job_id, torch_first):
    """torch's lr schedulers wrap optimizer.step to count its calls and warn when the
    scheduler steps first; with ours wrapping it too, in either order, they count, they do
    not warn, and our answers are applied before each step."""
    optimizer = small_optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if torch_first:
            theirs = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000)
        ours = greedylr.RemoteScheduler(optimizer, job_id, url=daemon.url, patience=0,
                                        asynchronous=True)
        if not torch_first:
            theirs = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000)
        for n in range(6):
            ours.step(one_step(optimizer, scale=float(n)))
            theirs.step()
        assert optimizer._step_count == 6
        ours.flush()
        assert optimizer.used[1:] == [[lr] for lr in
                                      [p["lr"] for p in ours.client.history(job_id)][:-1]]
        ours.close()
        one_step(optimizer)
        theirs.step()
        assert optimizer._step_count == 7


def test_a_tensor_metric_is_copied_before_the_training_changes_it(daemon, client, job_id):
    scheduler = greedylr.RemoteScheduler(small_optimizer(), job_id, url=daemon.url,
                                         asynchronous=True)
    # Changed in place while its report may still be on its way, many times, as a training
    # that reuses a buffer would: whether the reporter reads it before or after the change
    # is a race, which the copy takes out.
    sent = [0.5 + n / 64 for n in range(100)]
    for value in sent:
        loss = torch.tensor(value)
        scheduler.step(loss)
        loss.add_(100.0)
    graph = torch.tensor([2.5], requires_grad=True) * 1
    scheduler.step(graph)
    graph.data.fill_(7.0)
    scheduler.step(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="2 elements"):
        scheduler.step(torch.tensor([1.0, 2.0]))
    scheduler.close()
    losses = [p["loss"] for p in client.history(job_id)]
    assert losses[:101] == sent + [2.5] and losses[101] != losses[101] and len(losses) == 102


def test_ranks_of_one_job_in_one_thread(daemon, client, job_id):
    """Two ranks of a job of world size 2 driven from one thread: each rank's report waits
    for the other on its own thread, and both optimizers use the same lr at every step."""
    optimizers = [small_optimizer(), small_optimizer()]
    schedulers = [greedylr.RemoteScheduler(optimizers[rank], job_id, url=daemon.url, rank=rank,
                                           world_size=2, patience=0, asynchronous=True)
                  for rank in range(2)]
    for n in range(5):
        for rank in range(2):
            schedulers[rank].step(1.0 / (n + 1) + rank)
        for optimizer in optimizers:
            one_step(optimizer)
    for scheduler in schedulers:
        scheduler.close()
    told = [[p["lr"]] for p in client.history(job_id)]
    assert len(told) == 5 and client.history(job_id)[0]["ranks"] == 2
    # Each rank reports first here, so each optimizer.step uses the answer to this step.
    assert optimizers[0].used == optimizers[1].used == told
    assert schedulers[0].get_last_lr() == schedulers[1].get_last_lr() == told[4]


def test_an_optimizer_without_a_step_is_refused(daemon, job_id):
    class Groups:
        param_groups = [{"lr": 0.1}]

    with pytest.raises(TypeError, match="step"):
        greedylr.RemoteScheduler(Groups(), job_id, url=daemon.url, asynchronous=True)
    greedylr.RemoteScheduler(Groups(), job_id, url=daemon.url).step(1.0)
