"""The schedules the quality benchmark compares, each as a driver of one training.

A driver sets the optimizer's learning rate. The runner calls `before_update(optimizer)`
before every optimizer step, `after_update(loss)` after it, and `epoch_end(val_loss)`
after each epoch; a driver reports to its scheduler at its cadence: after every step
("step", the minibatch loss) or after every epoch ("epoch", the validation loss). `lrs`
records the lr after each report.

The policies of the service (constant, step, cosine, linear, greedylr, auto) go through a
real greedylrd with greedylr.RemoteScheduler; WSD, PyTorch's ReduceLROnPlateau and
hypergradient descent run in process, as a trainer would run them.
"""

import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import greedylr  # noqa: E402  (the package of this source tree)

# Hypergradient descent's multiplicative rate (Baydin et al. 2018, section 5): scale-free.
HD_BETA = 0.02
# WSD: warmup over this share of the reports, decay to 0 over the last share.
WSD_WARMUP, WSD_DECAY = 0.05, 0.2

# The policies, in the order the tables show them.
SERVICE = ("constant", "step", "cosine", "linear", "greedylr", "greedylr-epoch", "auto")
IN_PROCESS = ("wsd", "plateau", "hypergrad")
BASELINES = ("constant", "step", "cosine", "linear", "wsd", "plateau", "hypergrad",
             "greedylr", "greedylr-epoch")


def service_settings(policy, lr0, reports):
    """(service policy, config) of a policy label for a run of `reports` reports."""
    if policy == "constant":
        return "constant", {}
    if policy == "step":  # times 0.3 after each third of the run
        return "step", {"step_size": max(1, reports // 3), "gamma": 0.3}
    if policy == "cosine":
        return "cosine", {"t_max": reports}
    if policy == "linear":
        return "linear", {"total_steps": reports}
    if policy == "greedylr":
        # The defaults, with the bounds widened only where they would refuse lr0.
        return "greedylr", {"min_lr": min(1e-3, lr0), "max_lr": max(1.0, lr0)}
    if policy == "greedylr-epoch":
        return "greedylr", {"patience": 1, "factor": 0.8, "threshold_mode": "rel",
                            "threshold": 1e-3, "min_lr": lr0 / 100, "max_lr": lr0 * 10}
    if policy in ("auto", "auto-nocap"):
        return "auto", {"total_steps": reports}
    raise ValueError(f"unknown policy {policy}")


class Driver:
    """The common part: reporting at a cadence, and the lr after each report."""

    def __init__(self, optimizer, cadence, cap=None):
        self.optimizer = optimizer
        self.cadence = cadence
        self.cap = cap  # a function giving the stability cap now, or None
        self.lrs = []

    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def before_update(self, optimizer):
        pass

    def after_update(self, loss):
        if self.cadence == "step":
            self._report(loss)
        return math.isfinite(loss)

    def epoch_end(self, val_loss):
        if self.cadence == "epoch":
            self._report(val_loss)

    def _report(self, loss):
        self.report(loss)
        self.lrs.append(self.lr())


class Remote(Driver):
    """A policy of the service, through greedylr.RemoteScheduler."""

    def __init__(self, optimizer, cadence, url, job_id, policy, lr0, reports, cap=None,
                 family=None):
        super().__init__(optimizer, cadence, cap)
        if policy == "auto-tune":
            # auto with the settings the service tunes from the family's finished runs.
            self.scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url,
                                                      family=family, tune=True,
                                                      total_steps=reports)
            return
        if policy == "learned":
            # The family's newest learned model (auto while it has none), under the same cap.
            self.scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url,
                                                      policy="learned", family=family,
                                                      total_steps=reports)
            return
        name, config = service_settings(policy, lr0, reports)
        self.scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, policy=name,
                                                  **config)

    def report(self, loss):
        cap = self.cap() if self.cap else None
        self.scheduler.step(loss, lr_cap=cap)


class Model(Driver):
    """auto through an in-process model of it (--auto-model), while designing a version."""

    def __init__(self, optimizer, cadence, model_class, lr0, reports, cap=None):
        super().__init__(optimizer, cadence, cap)
        self.model = model_class(lr0, {"total_steps": reports})
        self.reports = 0
        # As RemoteScheduler takes a new job's lr (the warmup's first) before the first step.
        self.set_lr(self.model.lrs[0])

    def report(self, loss):
        cap = self.cap() if self.cap else None
        lr, _ = self.model.step(self.reports, loss, lr_cap=cap)
        self.reports += 1
        # The model answers as the service does: one number, or a list of one per group.
        self.set_lr(lr[0] if isinstance(lr, (list, tuple)) else lr)


class WSD(Driver):
    """Warmup-stable-decay: a linear warmup, the initial lr, a linear decay to 0."""

    def __init__(self, optimizer, cadence, lr0, reports):
        super().__init__(optimizer, cadence)
        self.lr0, self.total, self.done = lr0, reports, 0
        self.set_lr(self.factor(0) * lr0)

    def factor(self, t):
        warmup = max(1, round(WSD_WARMUP * self.total))
        decay_from = self.total - max(1, round(WSD_DECAY * self.total))
        if t < warmup:
            return (t + 1) / warmup
        if t >= decay_from:
            return max(0.0, (self.total - t) / (self.total - decay_from))
        return 1.0

    def report(self, loss):
        self.done += 1
        self.set_lr(self.factor(self.done) * self.lr0)


class Plateau(Driver):
    """PyTorch's ReduceLROnPlateau, factor 0.5: patience 2 epochs, or one epoch of steps."""

    def __init__(self, optimizer, cadence, steps_per_epoch):
        super().__init__(optimizer, cadence)
        patience = 2 if cadence == "epoch" else steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                                    patience=patience)

    def report(self, loss):
        self.scheduler.step(loss)


class Hypergradient(Driver):
    """Hypergradient descent, the multiplicative rule of Baydin et al. (2018): before each
    step, lr *= 1 + beta * cos(g_t, -u_{t-1}), with g_t the gradient and u_{t-1} the last
    update of the parameters. It adapts at every optimizer step whatever the cadence."""

    def __init__(self, optimizer, cadence):
        super().__init__(optimizer, cadence)
        self.previous = None  # the parameters before the last update
        self.update = None  # the last update

    def _flat(self, what):
        return torch.cat([what(p).reshape(-1) for g in self.optimizer.param_groups
                          for p in g["params"]])

    def before_update(self, optimizer):
        with torch.no_grad():
            grad = self._flat(lambda p: p.grad if p.grad is not None else torch.zeros_like(p))
            if self.update is not None:
                denominator = grad.norm() * self.update.norm()
                if denominator > 0:
                    cosine = (grad @ -self.update / denominator).item()
                    self.set_lr(max(0.0, self.lr() * (1 + HD_BETA * cosine)))
            self.previous = self._flat(lambda p: p)

    def after_update(self, loss):
        with torch.no_grad():
            self.update = self._flat(lambda p: p) - self.previous
        return super().after_update(loss)

    def report(self, loss):
        pass  # it follows the gradients, not the losses


def make_driver(policy, training, cadence, lr0, reports, url, job_id, auto_model=None,
                family=None):
    """The driver of a policy label for one training; "auto-tune" is auto tuned from the
    runs of family, "learned" the model learned from them (families.py)."""
    optimizer = training.optimizer
    cap = None
    # The bound is of plain gradient steps: it says nothing of Adam's per-coordinate steps.
    if policy in ("auto", "auto-tune", "learned") and hasattr(training, "stable_step") and \
            isinstance(optimizer, torch.optim.SGD):
        cap = training.stable_step
    if policy in ("auto", "auto-nocap") and auto_model is not None:
        driver = Model(optimizer, cadence, auto_model, lr0, reports, cap)
    elif policy in SERVICE or policy in ("auto-nocap", "auto-tune", "learned"):
        driver = Remote(optimizer, cadence, url, job_id, policy, lr0, reports, cap, family)
    elif policy == "wsd":
        driver = WSD(optimizer, cadence, lr0, reports)
    elif policy == "plateau":
        driver = Plateau(optimizer, cadence, training.steps_per_epoch)
    elif policy == "hypergrad":
        driver = Hypergradient(optimizer, cadence)
    else:
        raise ValueError(f"unknown policy {policy}")
    if cap is not None:
        # The service caps every step after the first: the first is the trainer's to cap.
        bound = cap()
        if bound is not None:
            driver.set_lr(min(driver.lr(), bound))
    return driver
