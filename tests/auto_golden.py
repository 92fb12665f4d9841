#!/usr/bin/python3
"""The golden vectors of the auto policy: tests/data/auto.json, made by the independent
model in tests/auto_model.py. tests/test_auto.c checks that the core answers every step of
every case bit for bit (straight through, and through saved and restored states), and
tests/test_auto_model.py checks that the file is still what the model makes.

Each case is a job: its lr and config, and a stream of reports (step, loss, lr_cap) shaped
like a training run of some kind (a good rate, a rate too low, a rate too high, noise at
a report per step, divergence, a cap), with the lr and event the model answers to each.

Usage: tests/auto_golden.py [--check]   (writes the file; --check compares instead)
"""

import json
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import auto_model  # noqa: E402  (found through the path set just above)

PATH = os.path.join(HERE, "data", "auto.json")


def curve(rng, n, start, floor, speed, noise, shape="exp"):
    """A loss curve of n reports: from start toward floor at speed, with relative noise."""
    out = []
    for k in range(n):
        if shape == "exp":
            value = floor + (start - floor) * math.exp(-speed * k)
        elif shape == "linear":  # a rate far too low: the loss falls steadily, slowly
            value = max(floor, start - speed * k * (start - floor))
        else:  # "bounce": too high a rate, the loss stalls and jumps about
            value = floor + (start - floor) * (0.6 + 0.4 * math.sin(0.7 * k))
        out.append(value * (1.0 + noise * rng.gauss(0.0, 1.0)))
    return out


def encode(value):
    """A loss or lr for JSON: NaN and infinities as the strings the API takes."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def make_cases():
    rng = random.Random(20261202)
    cases = []

    def add(name, lr, config, losses, caps=None, steps=None):
        model = auto_model.Auto(lr, config)
        steps = steps or list(range(len(losses)))
        caps = caps or [None] * len(losses)
        lrs, events = [], []
        for step, loss, cap in zip(steps, losses, caps):
            answer, event = model.step(step, loss, cap)
            lrs.append(answer)
            events.append(event)
        cases.append({"name": name, "policy": "auto", "lr": lr, "config": config,
                      "steps": steps, "losses": [encode(v) for v in losses],
                      "lr_caps": caps, "expected_lr": lrs, "expected_event": events})

    # A report per epoch with a horizon: good, too low, too high, overfitting.
    for total in (12, 20, 30):
        add(f"epoch-good-{total}", 1e-3, {"total_steps": total},
            curve(rng, total, 2.3, 0.1, 0.3, 0.01))
        add(f"epoch-low-{total}", 5e-5, {"total_steps": total},
            curve(rng, total, 2.3, 0.1, 0.02, 0.002, "linear"))
        add(f"epoch-high-{total}", 10.0, {"total_steps": total},
            curve(rng, total, 2.3, 1.0, 0.0, 0.05, "bounce"))
    overfit = [0.1 + 2.0 * math.exp(-0.5 * k) + 0.004 * max(0, k - 10) ** 1.5 for k in range(25)]
    add("epoch-overfit", 3e-3, {"total_steps": 25}, overfit)
    # A report per step: noisy minibatch losses, with every annealing shape.
    for anneal, start in (("cosine", 0.0), ("linear", 0.0), ("linear", 0.8), ("none", 0.0),
                          ("cosine", 0.5)):
        add(f"step-{anneal}-{start}", 0.1, {"total_steps": 600, "anneal": anneal,
                                            "anneal_start": start},
            curve(rng, 600, 2.3, 0.05, 0.01, 0.2))
    add("step-low", 1e-4, {"total_steps": 800}, curve(rng, 800, 2.0, 0.1, 0.0008, 0.05, "linear"))
    # No horizon: the patience grows with the run, and nothing anneals.
    add("no-horizon", 0.05, {}, curve(rng, 400, 1.5, 0.2, 0.02, 0.1))
    add("no-horizon-low", 1e-5, {}, curve(rng, 300, 1.5, 0.2, 0.002, 0.01, "linear"))
    # Divergence: non-finite losses, and a loss far above its best.
    spikes = curve(rng, 60, 2.0, 0.3, 0.1, 0.02)
    spikes[20] = math.nan
    spikes[21] = math.inf
    spikes[30:34] = [v * 5 for v in spikes[30:34]]
    spikes[45] = -math.inf
    add("diverged", 0.5, {"total_steps": 60}, spikes)
    add("diverged-first", 0.5, {"total_steps": 20}, [math.nan] + curve(rng, 19, 2.0, 0.3, 0.1, 0.02))
    # The client's stability cap, moving report by report (NMF-like).
    caps = [0.02 + 0.01 * math.sin(0.1 * k) for k in range(200)]
    add("capped", 0.1, {"total_steps": 200}, curve(rng, 200, 50.0, 1.0, 0.02, 0.03), caps=caps)
    low_caps = [None if k % 3 else 2e-3 for k in range(100)]
    add("capped-some", 1e-3, {"total_steps": 100}, curve(rng, 100, 3.0, 0.5, 0.01, 0.01, "linear"),
        caps=low_caps)
    # Several groups, with a setting of every kind; losses below zero; gaps in the steps.
    add("groups", [0.1, 0.01, 1.0], {"total_steps": 150, "patience": 4, "threshold": 0.01,
                                     "decrease_factor": 0.7, "increase_factor": 1.5,
                                     "min_factor": 0.1, "max_factor": 4.0,
                                     "diverge_threshold": 0.5, "probe_until": 0.8},
        curve(rng, 150, 1.0, 0.2, 0.005, 0.02, "linear"))
    add("negative", 0.01, {"total_steps": 100}, [v - 3.0 for v in curve(rng, 100, 2.0, 0.1, 0.05, 0.02)])
    add("gaps", 0.01, {"total_steps": 50}, curve(rng, 50, 2.0, 0.1, 0.1, 0.02),
        steps=[3 * k + (k % 2) for k in range(50)])
    add("zero-loss", 0.01, {"total_steps": 30}, [1.0, 0.5, 0.0, 0.0, 0.1] + [0.0] * 25)
    return cases


def main():
    text = json.dumps({"about": "Golden vectors of the auto policy (version "
                       f"{auto_model.VERSION}), made by tests/auto_golden.py from the model in "
                       "tests/auto_model.py: after the report of steps[k] with losses[k] and "
                       "lr_caps[k] (null: none), the lr is expected_lr[k] and the event "
                       "expected_event[k].",
                       "cases": make_cases()}, indent=None) + "\n"
    if "--check" in sys.argv[1:]:
        with open(PATH) as f:
            return 0 if f.read() == text else 1
    with open(PATH, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
