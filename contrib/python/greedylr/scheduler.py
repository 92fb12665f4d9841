"""RemoteScheduler: a PyTorch learning-rate scheduler whose decisions come from greedylrd.

It is used like torch.optim.lr_scheduler.ReduceLROnPlateau: step(metric) once per epoch
(or per step), with the loss. Its step counter (last_epoch, saved by state_dict) numbers
the reports, so load_state_dict can rewind the job to the checkpoint and a resumed
training gets exactly the learning rates it got the first time. torch itself is imported
only to find the rank and world size under torch.distributed.
"""

import operator

from . import errors
from .client import DEFAULT_URL, Client

# The policies whose decisions depend on the metric (the others are schedules of the step
# number: step() may be called without a metric for them).
METRIC_POLICIES = ("greedylr", "auto", "plateau")


def distributed_rank_and_size():
    """(rank, world size) of this process under torch.distributed, or (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier():
    """Waits for every rank under torch.distributed; nothing without it."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def differences(job, request):
    """What differs between an existing job and the create request that hit it, in words."""
    found = []
    if job.get("policy") != request["policy"]:
        found.append(f"policy {job.get('policy')!r} (yours {request['policy']!r})")
    if job.get("initial_lr") != request["lr"]:
        found.append(f"lr {job.get('initial_lr')!r} (yours {request['lr']!r})")
    stored = job.get("config", {})
    for key, value in sorted(request["config"].items()):
        if stored.get(key) != value:
            found.append(f"config {key}={stored.get(key)!r} (yours {value!r})")
    for key in ("world_size", "aggregate", "aggregate_timeout_ms"):
        if request.get(key) is not None and job.get(key) != request[key]:
            found.append(f"{key} {job.get(key)!r} (yours {request[key]!r})")
    return found


class RemoteScheduler:
    """Sets the optimizer's learning rates to what greedylrd answers to each reported loss.

    optimizer: a torch.optim optimizer (anything with param_groups). job_id: the job's
    name on the service (created if new; every rank and every restart of one training uses
    the same). url: where greedylrd listens. policy: "greedylr", "auto", "plateau", or a
    schedule ("constant", "step", "exponential", "cosine", "linear"). config: the policy's
    settings (README, "Policies"), e.g. patience=5, min_lr=1e-4.

    Keyword-only: total_steps, the number of times step() will be called in the whole
    training (auto anneals to zero over it; linear needs it); lr, the initial learning rate (a number, or one per param group; by
    default each group's "initial_lr" or "lr"); tags; rank and world_size (by default
    those of torch.distributed, else 0 and 1); aggregate and aggregate_timeout_ms (how the
    ranks' losses are combined); client (a greedylr.Client to use instead of a new one),
    timeout and retries (for the new one).

    A job created before with another policy, lr or config raises greedylr.Conflict naming
    the differences. A job that already has reports is continued where it is: last_epoch
    is its last step + 1 and the optimizer takes its current lr.
    """

    def __init__(self, optimizer, job_id, url=DEFAULT_URL, policy="greedylr", *, lr=None,
                 total_steps=None, tags=None, rank=None, world_size=None, aggregate=None,
                 aggregate_timeout_ms=None, client=None, timeout=10.0, retries=5, token=None,
                 **config):
        if total_steps is not None:
            config["total_steps"] = operator.index(total_steps)
        self.optimizer = optimizer
        self.job_id = job_id
        self.policy = policy
        self.client = (client if client is not None
                       else Client(url, timeout, retries, token=token))
        groups = optimizer.param_groups
        if lr is None:
            initial = [group.setdefault("initial_lr", group["lr"]) for group in groups]
        elif isinstance(lr, (list, tuple)):
            if len(lr) != len(groups):
                raise ValueError(f"lr has {len(lr)} values for {len(groups)} param groups")
            initial = [float(value) for value in lr]
        else:
            initial = [float(lr)] * len(groups)
        found_rank, found_size = distributed_rank_and_size()
        self.rank = found_rank if rank is None else rank
        self.world_size = found_size if world_size is None else world_size
        request = {"policy": policy, "lr": initial[0] if len(initial) == 1 else initial,
                   "config": config, "world_size": self.world_size, "aggregate": aggregate,
                   "aggregate_timeout_ms": aggregate_timeout_ms}
        try:
            job = self.client.create_job(job_id, request["lr"], policy, config, tags,
                                         self.world_size, aggregate, aggregate_timeout_ms)
        except errors.Conflict as conflict:
            raise self._explain(conflict, request) from None
        self.last_epoch = 0 if job["last_step"] is None else job["last_step"] + 1
        self.last_answer = None
        self._apply(job["lr"])

    def step(self, metric=None, lr_cap=None):
        """Reports metric (the loss: a float or a one-element tensor; NaN and infinities
        are sent as such) as step last_epoch, and sets every param group's lr to the
        answer. The metric may be left out only for schedules of the step number.
        lr_cap (policy "auto"): an upper bound on a stable lr that the trainer computed
        for this step; the answer never exceeds it."""
        if metric is None and self.policy in METRIC_POLICIES:
            raise TypeError(f"step() needs the metric (the loss) with policy {self.policy!r}")
        answer = self.client.report(self.job_id, self.last_epoch, metric, rank=self.rank,
                                    lr_cap=lr_cap)
        self.last_epoch += 1
        self.last_answer = answer
        self._apply(answer["lr"])

    def get_last_lr(self):
        """The learning rate of each param group, as last set."""
        return list(self._last_lr)

    def state_dict(self):
        """What load_state_dict needs to resume: the job and the step counter."""
        return {"job_id": self.job_id, "last_epoch": self.last_epoch,
                "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict):
        """Resumes from a state_dict(): rewinds the job to the step the state was saved at
        (forgetting the decisions after it) and sets the optimizer's lrs to the job's.

        Under torch.distributed every rank must call it: rank 0 rewinds and the others wait
        for it, so that no rank reports before the rewind.
        """
        if state_dict["job_id"] != self.job_id:
            raise ValueError(f"the state is of job {state_dict['job_id']!r}, "
                             f"this scheduler's is {self.job_id!r}")
        last_epoch = int(state_dict["last_epoch"])
        to_step = last_epoch - 1
        if self.world_size > 1 and distributed_rank_and_size()[1] > 1:
            if self.rank == 0:
                self.client.rewind(self.job_id, to_step)
            barrier()
            job = self.client.get_job(self.job_id)
        else:
            job = self.client.rewind(self.job_id, to_step)
        now_at = -1 if job["last_step"] is None else job["last_step"]
        if now_at != to_step:
            raise RuntimeError(f"job {self.job_id!r} cannot go back to step {to_step}: its "
                               f"history ends at step {now_at}")
        self.last_epoch = last_epoch
        self._apply(job["lr"])

    def finish(self):
        """Marks the job finished on the service (at the end of training)."""
        return self.client.finish(self.job_id)

    def _apply(self, lr):
        """Sets each param group's lr: lr is one number or one per group."""
        groups = self.optimizer.param_groups
        lrs = lr if isinstance(lr, list) else [lr] * len(groups)
        if len(lrs) != len(groups):
            raise RuntimeError(f"job {self.job_id!r} has {len(lrs)} learning rates for "
                               f"{len(groups)} param groups")
        for group, value in zip(groups, lrs):
            group["lr"] = value
        self._last_lr = list(lrs)

    def _explain(self, conflict, request):
        """The Conflict of a create, with what differs from the existing job."""
        try:
            found = differences(self.client.get_job(self.job_id), request)
        except errors.Error:
            found = []
        if not found:
            return conflict
        detail = (f"job {self.job_id!r} exists with another configuration: "
                  f"{'; '.join(found)}. Use another job id, or delete the job first")
        return errors.Conflict(conflict.status, conflict.title, detail, conflict.type,
                               conflict.method, conflict.path)
