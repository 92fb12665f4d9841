"""RemoteScheduler: a PyTorch learning-rate scheduler whose decisions come from greedylrd.

It is used like torch.optim.lr_scheduler.ReduceLROnPlateau: step(metric) once per epoch
(or per step), with the loss. Its step counter (last_epoch, saved by state_dict) numbers
the reports, so load_state_dict can rewind the job to the checkpoint and a resumed
training gets exactly the learning rates it got the first time. torch itself is imported
only to find the rank and world size under torch.distributed, and to read a CUDA metric.

With asynchronous=True the reports travel on a thread of their own (the Reporter below)
while the training goes on, and the answer is written into the param groups just before
the next optimizer.step(), which waits for it when it is not there yet.
"""

import operator
import queue
import threading
import types
import warnings
import weakref

from . import errors
from .client import DEFAULT_URL, Client

# The policies whose decisions depend on the metric (the others are schedules of the step
# number: step() may be called without a metric for them).
METRIC_POLICIES = ("greedylr", "auto", "plateau", "learned")
# The marks torch's own lr schedulers put on the optimizer.step they wrap (1.x counts the
# calls with "_with_counter", 2.x with "_wrapped_by_lr_sched"): the step we put over theirs
# carries them too, so that they neither wrap it again nor warn that it was overridden.
TORCH_STEP_MARKS = ("_with_counter", "_wrapped_by_lr_sched")


def taken_metric(metric):
    """What step() hands to the reporter: None, a float, or (tensor, stream).

    A tensor is not read here: on a GPU that would wait for every kernel queued before it.
    It is detached and copied (on a GPU the copy is queued like any kernel, on the training
    thread's current stream, which goes with it) so that the training may change the
    original in place meanwhile; the reporter reads the copy. Anything else is read at
    once, as float() takes it. A tensor of more than one element raises ValueError here,
    as float() of it would.
    """
    if metric is None:
        return None
    detach = getattr(metric, "detach", None)
    if detach is None:
        return float(metric)
    if metric.numel() != 1:
        raise ValueError(f"the metric is a tensor of {metric.numel()} elements, not one")
    copy = detach().clone()
    stream = None
    if copy.device.type == "cuda":
        import torch

        stream = torch.cuda.current_stream(copy.device)
    return copy, stream


def read_metric(taken):
    """The float of what taken_metric() returned, on the reporter's thread. A CUDA copy is
    read on the stream it was queued on, so that the read comes after the copy; the wait
    for the device is this thread's, not the training's."""
    if not isinstance(taken, tuple):
        return taken
    copy, stream = taken
    if stream is None:
        return float(copy)
    import torch

    with torch.cuda.stream(stream):
        return float(copy)


class Reporter:
    """The thread of an asynchronous RemoteScheduler: it sends one report at a time, on the
    client's keep-alive connection, and hands back the answer or the exception.

    send() and take() are called by the training thread only; send() is never called while
    a report is in flight (the scheduler takes the answer first), so one queue each way is
    all the synchronisation needed. The thread holds no reference to the scheduler.
    """

    def __init__(self, client, job_id, rank):
        self.client = client
        self.job_id = job_id
        self.rank = rank
        self.in_flight = None  # the step of the report sent and not yet taken
        self._requests = queue.SimpleQueue()
        self._answers = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"greedylr {job_id}",
                                        daemon=True)
        self._thread.start()

    def send(self, step, metric, lr_cap):
        """Hands a report over (metric as taken_metric() returns it) and returns at once."""
        assert self.in_flight is None, "a report is in flight already"
        self.in_flight = step
        self._requests.put((step, metric, lr_cap))

    def take(self):
        """(step, answer, exception) of the report in flight, waiting for it; None when no
        report is in flight. Exactly one of answer and exception is None."""
        if self.in_flight is None:
            return None
        answer, error = self._answers.get()
        step, self.in_flight = self.in_flight, None
        return step, answer, error

    def stop(self):
        """Lets the report in flight finish, then ends the thread. Returns what take() does."""
        outcome = self.take()
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()
        return outcome

    def _run(self):
        while True:
            request = self._requests.get()
            if request is None:
                return
            step, metric, lr_cap = request
            try:
                answer = self.client.report(self.job_id, step, read_metric(metric),
                                            rank=self.rank, lr_cap=lr_cap)
                self._answers.put((answer, None))
            except BaseException as error:  # every failure reaches the training thread
                self._answers.put((None, error))


def stop_at_exit(reporter):
    """Sends the last report of a scheduler nobody closed, as the interpreter exits (or the
    scheduler is collected); a failure can only be warned about then."""
    outcome = reporter.stop()
    if outcome is not None and outcome[2] is not None:
        warnings.warn(f"greedylr: the report of step {outcome[0]} of job "
                      f"{reporter.job_id!r} failed: {outcome[2]}", RuntimeWarning)


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


# Config keys the service accepts but does not keep in the job's config, because they
# change nothing: a request that has them differs in nothing from a job that does not show them.
IGNORED_CONFIG_KEYS = {"greedylr": ("verbose",)}


def differences(job, request):
    """What differs between an existing job and the create request that hit it, in words."""
    found = []
    if job.get("policy") != request["policy"]:
        found.append(f"policy {job.get('policy')!r} (yours {request['policy']!r})")
    if job.get("initial_lr") != request["lr"]:
        found.append(f"lr {job.get('initial_lr')!r} (yours {request['lr']!r})")
    stored = job.get("config", {})
    for key, value in sorted(request["config"].items()):
        if key in IGNORED_CONFIG_KEYS.get(request["policy"], ()):
            continue
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
    the same). url: where greedylrd listens. policy: "greedylr", "auto", "plateau", a
    schedule of the step number ("constant", "step", "multistep", "constant_factor",
    "exponential", "polynomial", "cosine", "cosine_restarts", "linear", "onecycle"), or
    "sequence" of these. config: the policy's settings (README, "Policies"), e.g.
    patience=5, min_lr=1e-4.

    Keyword-only: total_steps, the number of times step() will be called in the whole
    training (auto anneals to zero over it; linear and onecycle need it); lr, the initial
    learning rate (a number, or one per param group; by default each group's
    "initial_lr" or "lr"); tags; rank and world_size (by default those of
    torch.distributed, else 0 and 1); aggregate and aggregate_timeout_ms (how the ranks'
    losses are combined); client (a greedylr.Client to use instead of a new one), timeout
    and retries (for the new one); asynchronous (see below); family, the family of runs
    the job belongs to, and tune=True: the service chooses the settings of the policy
    ("auto" unless named) and a factor of the lr from the family's finished runs, and the
    optimizer takes the tuned lr (the job's "tuned" in self.job says what and why).
    policy="learned" with a family runs the model the service learned from the family's
    histories (Client.learn()), or auto while it has none (self.job["tuned"] says which).

    A job created before with another policy, lr or config raises greedylr.Conflict naming
    the differences. A job that already has reports is continued where it is: last_epoch
    is its last step + 1 and the optimizer takes its current lr.

    asynchronous=True: step() hands the report to a thread of the scheduler's and returns;
    the answer is written into the param groups just before the next optimizer.step()
    (which waits for it if it is not there yet), so the lrs used are those of the default,
    synchronous mode, step for step. A report that failed raises its exception at the next
    step(), optimizer.step(), get_last_lr(), state_dict(), load_state_dict(), finish() or
    close(). Between step() and optimizer.step() the param groups still hold the lr before
    (get_last_lr() and last_answer wait for the new one). The optimizer needs a step method:
    the scheduler wraps it, on the instance, until close().
    """

    def __init__(self, optimizer, job_id, url=DEFAULT_URL, policy=None, *, lr=None,
                 total_steps=None, tags=None, rank=None, world_size=None, aggregate=None,
                 aggregate_timeout_ms=None, client=None, timeout=10.0, retries=5, token=None,
                 asynchronous=False, family=None, tune=False, **config):
        if policy is None:
            policy = "auto" if tune else "greedylr"
        if total_steps is not None:
            config["total_steps"] = operator.index(total_steps)
        if asynchronous and not callable(getattr(optimizer, "step", None)):
            raise TypeError("asynchronous=True needs an optimizer with a step() method")
        self.optimizer = optimizer
        self._reporter = None
        self._hooked = None
        self.job_id = job_id
        self.policy = policy
        self._own_client = client is None
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
                                         self.world_size, aggregate, aggregate_timeout_ms,
                                         family=family, tune=tune)
        except errors.Conflict as conflict:
            raise self._explain(conflict, request) from None
        self.job = job
        self.last_epoch = 0 if job["last_step"] is None else job["last_step"] + 1
        self._last_answer = None
        self._apply(job["lr"])
        if asynchronous:
            self._reporter = Reporter(self.client, job_id, self.rank)
            self._finalizer = weakref.finalize(self, stop_at_exit, self._reporter)
            self._hook_step()

    @property
    def asynchronous(self):
        """Whether reports travel on the scheduler's thread (until close())."""
        return self._reporter is not None

    @property
    def last_answer(self):
        """The whole answer to the last report (None before the first one)."""
        self.flush()
        return self._last_answer

    def step(self, metric=None, lr_cap=None):
        """Reports metric (the loss: a float or a one-element tensor; NaN and infinities
        are sent as such) as step last_epoch, and sets every param group's lr to the
        answer. The metric may be left out only for schedules of the step number.
        lr_cap (policy "auto"): an upper bound on a stable lr that the trainer computed
        for this step; the answer never exceeds it.

        Asynchronous: raises the failure of the report before, if it failed; otherwise
        hands this one over and returns (a tensor metric is copied, and read by the
        scheduler's thread)."""
        if metric is None and self.policy in METRIC_POLICIES:
            raise TypeError(f"step() needs the metric (the loss) with policy {self.policy!r}")
        if self._reporter is None:
            answer = self.client.report(self.job_id, self.last_epoch, metric, rank=self.rank,
                                        lr_cap=lr_cap)
            self.last_epoch += 1
            self._last_answer = answer
            self._apply(answer["lr"])
            return
        self.flush()
        self._reporter.send(self.last_epoch, taken_metric(metric),
                            None if lr_cap is None else float(lr_cap))
        self.last_epoch += 1

    def flush(self):
        """Asynchronous: waits for the report in flight and sets the param groups' lrs to
        its answer, or raises its failure (last_epoch then goes back to that step, as if
        step() had raised it). Nothing when no report is in flight."""
        if self._reporter is None:
            return
        outcome = self._reporter.take()
        if outcome is not None:
            self._settle(*outcome)

    def close(self):
        """Asynchronous: waits for the report in flight (raising its failure, as flush()),
        ends the scheduler's thread and gives the optimizer its own step() back; step()
        then reports synchronously. In either mode it closes the connection of the client
        the scheduler made (a later request opens a new one)."""
        try:
            if self._reporter is not None:
                reporter, self._reporter = self._reporter, None
                self._finalizer.detach()
                self._unhook_step()
                outcome = reporter.stop()
                if outcome is not None:
                    self._settle(*outcome)
        finally:
            if self._own_client:
                self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def get_last_lr(self):
        """The learning rate of each param group, as last set."""
        self.flush()
        return list(self._last_lr)

    def state_dict(self):
        """What load_state_dict needs to resume: the job and the step counter."""
        self.flush()
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
        # A report still in flight would land after the rewind: it goes first.
        self.flush()
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

    def finish(self, outcome=None):
        """Marks the job finished on the service (at the end of training), after the report
        in flight, with its outcome (lower is better; by default its last loss); then
        close()s the scheduler."""
        self.flush()
        job = self.client.finish(self.job_id, outcome)
        self.close()
        return job

    def _settle(self, step, answer, error):
        """Applies what the reporter answered for step, or raises its failure."""
        if error is not None:
            self.last_epoch = step
            raise error
        self._last_answer = answer
        self._apply(answer["lr"])

    def _hook_step(self):
        """Puts a step over the optimizer's that applies the answer in flight first.

        It is a method bound to the optimizer, as optimizer.step is, because torch's lr
        schedulers wrap optimizer.step through its __func__ and __self__ (to count its
        calls) when they are created after this one; made after one of theirs, it carries
        their marks (TORCH_STEP_MARKS) and calls their wrapper, which goes on counting.
        """
        optimizer = self.optimizer
        had_own = "step" in vars(optimizer)
        inner = optimizer.step

        def step(_optimizer, *args, **kwargs):
            self.flush()
            return inner(*args, **kwargs)

        for mark in TORCH_STEP_MARKS:
            if hasattr(inner, mark):
                setattr(step, mark, getattr(inner, mark))
        step.__doc__ = getattr(inner, "__doc__", None)
        hooked = types.MethodType(step, optimizer)
        optimizer.step = hooked
        self._hooked = (hooked, inner if had_own else None)

    def _unhook_step(self):
        """Gives the optimizer the step it had, unless another wrapper went over ours since
        (that one keeps calling ours, which then only calls the one it wrapped)."""
        hooked, inner = self._hooked
        self._hooked = None
        optimizer = self.optimizer
        if vars(optimizer).get("step") is not hooked:
            return
        if inner is None:
            del optimizer.step
        else:
            optimizer.step = inner

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
