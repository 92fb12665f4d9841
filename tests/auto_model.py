"""An independent model of the `auto` policy, version 1, written from its description in
the README ("Policies", auto) and not from the C code, so that the golden vectors it makes
(tests/data/auto.json, see auto_golden.py) check the core against a second reading of the
same rules. Every arithmetic step is written in the order the description gives, so the
two agree to the last bit; Python floats are IEEE doubles like C's.

The benchmark (contrib/bench/quality) can also run it in process (--auto-model) while a
new version of the policy is being designed.
"""

import math

VERSION = 1
PATIENCE_FRACTION = 0.05  # automatic patience: this fraction of the horizon
PATIENCE_MIN = 2
PATIENCE_MIN_NO_HORIZON = 10  # without a horizon the first reports say little
MAX_COUNT = 1000000000

WARM, BASE, PROBE, SETTLED = 0, 1, 2, 3

DEFAULTS = {
    "version": VERSION,
    "total_steps": 0,
    "patience": 0,
    "threshold": 1e-3,
    "decrease_factor": 0.5,
    "increase_factor": 2.0,
    "min_factor": 1e-3,
    "max_factor": 10.0,
    "diverge_threshold": 1.0,
    "probe_until": 0.5,
    "probe_gain": 1.25,
    "anneal": "linear",
    "anneal_start": 0.75,
    "warmup": 0.05,
}


class Auto:
    """One job's scheduler: Auto(lr, config).step(step, loss, lr_cap) -> (lrs, event)."""

    def __init__(self, lr, config=None):
        self.lr_is_array = isinstance(lr, list)
        self.lr0 = [float(v) for v in lr] if self.lr_is_array else [float(lr)]
        cfg = dict(DEFAULTS)
        for key, value in (config or {}).items():
            if key not in cfg:
                raise ValueError(f"unknown key {key}")
            cfg[key] = value
        self.cfg = cfg
        self.lrs = [(v * 1.0) * self.envelope(0) * self.warmup_factor(0) for v in self.lr0]
        self.scale = 1.0
        self.ema = None
        self.best = None
        self.mark = None
        self.rate_base = 0.0
        self.num_bad = 0
        self.cooldown = 0
        self.reports = 0
        self.next_check = 0
        self.phase = WARM

    def patience(self, reports):
        """The patience, in reports: the setting, or a fraction of the horizon: the
        declared total_steps, or twice the reports so far when none was declared (and then
        at least PATIENCE_MIN_NO_HORIZON)."""
        if self.cfg["patience"] > 0:
            return self.cfg["patience"]
        if self.cfg["total_steps"] > 0:
            horizon, least = self.cfg["total_steps"], PATIENCE_MIN
        else:
            horizon, least = 2 * reports, PATIENCE_MIN_NO_HORIZON
        return max(least, int(math.floor(PATIENCE_FRACTION * float(horizon) + 0.5)))

    def envelope(self, reports):
        """The annealing factor after `reports` reports: 1 without a horizon."""
        total = self.cfg["total_steps"]
        if total == 0 or self.cfg["anneal"] == "none":
            return 1.0
        start = self.cfg["anneal_start"] * float(total)
        done = float(min(reports, total))
        if done <= start:
            return 1.0
        progress = (done - start) / (float(total) - start)
        if self.cfg["anneal"] == "linear":
            return 1.0 - progress
        return (1.0 + math.cos(math.pi * progress)) / 2.0

    def warmup_factor(self, reports):
        """The warmup's factor after `reports` reports: a ramp over the first
        round(warmup * total_steps) reports, 1 without a horizon or after it."""
        total = self.cfg["total_steps"]
        if total == 0:
            return 1.0
        length = int(math.floor(self.cfg["warmup"] * float(total) + 0.5))
        if reports + 1 >= length:
            return 1.0
        return float(reports + 1) / float(length)

    def lower(self):
        self.scale = max(self.scale * self.cfg["decrease_factor"], self.cfg["min_factor"])

    def may_probe(self, reports, cap):
        cfg = self.cfg
        if self.scale * cfg["increase_factor"] > cfg["max_factor"]:
            return False
        if cfg["total_steps"] > 0 and float(reports) > cfg["probe_until"] * float(cfg["total_steps"]):
            return False
        for lr0 in self.lr0:
            if lr0 * (self.scale * cfg["increase_factor"]) > cap:
                return False
        return True

    def settle_after_cut(self, reports, p):
        """After a cut: wait p reports, measure from here, and probe no more."""
        self.cooldown = p
        self.num_bad = 0
        self.phase = SETTLED
        self.mark = self.ema
        self.next_check = reports + p

    def judge(self, loss, reports, p, cap):
        """Updates the smoothed loss and the scale for one finite loss; returns the event."""
        cfg = self.cfg
        if self.ema is None:
            self.ema = loss
            self.best = loss
            self.mark = loss
            self.next_check = reports + p
            return "hold"
        alpha = 2.0 / (float(p) + 1.0)
        self.ema = self.ema + alpha * (loss - self.ema)
        if self.ema - self.best > cfg["diverge_threshold"] * abs(self.best):
            self.lower()
            self.settle_after_cut(reports, p)
            # Judged from here on: another cut needs the loss to rise that far again.
            self.best = self.ema
            return "diverged"
        if self.cooldown > 0:
            self.cooldown -= 1
            if self.ema < self.best:
                self.best = self.ema
            return "cooldown"
        if self.ema < self.best - cfg["threshold"] * abs(self.best):
            self.best = self.ema
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.num_bad >= p:
            self.lower()
            self.settle_after_cut(reports, p)
            return "decrease"
        if reports < self.next_check:
            return "hold"
        rate = 0.0 if self.mark == 0 else (self.mark - self.ema) / abs(self.mark)
        self.mark = self.ema
        self.next_check = reports + p
        if self.phase == WARM:
            self.phase = BASE
        elif self.phase == BASE:
            # A loss that did not fall, or that is off its best, is no sign of a rate too
            # low: no probe then.
            if rate > 0 and self.num_bad == 0 and self.may_probe(reports, cap):
                self.rate_base = rate
                self.scale = self.scale * cfg["increase_factor"]
                self.phase = PROBE
                return "increase"
        elif self.phase == PROBE:
            if rate > 0 and rate > self.rate_base * cfg["probe_gain"]:
                if self.num_bad == 0 and self.may_probe(reports, cap):
                    self.rate_base = rate
                    self.scale = self.scale * cfg["increase_factor"]
                    return "increase"
                self.phase = SETTLED
            else:
                self.scale = self.scale / cfg["increase_factor"]
                self.phase = SETTLED
                return "decrease"
        return "hold"

    def step(self, step, loss, lr_cap=None):
        """One report: returns (the lr of every group, the event's name)."""
        cap = math.inf if lr_cap is None else float(lr_cap)
        loss = float(loss)
        self.reports += 1
        reports = self.reports
        p = self.patience(reports)
        if math.isfinite(loss):
            event = self.judge(loss, reports, p, cap)
        else:
            self.lower()
            self.settle_after_cut(reports, p)
            event = "diverged"
        env = self.envelope(reports)
        before = self.envelope(reports - 1)
        warm = self.warmup_factor(reports)
        capped = False
        for i, lr0 in enumerate(self.lr0):
            base = lr0 * self.scale
            if base > cap:
                base = cap
                capped = True
            self.lrs[i] = base * env * warm
        if event == "hold" and capped:
            event = "capped"
        elif event == "hold" and warm > self.warmup_factor(reports - 1):
            event = "warmup"
        elif event == "hold" and env < before:
            event = "anneal"
        return (list(self.lrs) if self.lr_is_array else self.lrs[0]), event
