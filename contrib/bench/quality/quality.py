#!/usr/bin/python3
"""The training-quality benchmark: real PyTorch trainings whose learning rates come from
greedylrd (and from in-process baselines), scored on the final validation loss.

    quality.py --daemon PATH [--out FILE] [--held-out | --all] [--reuse FILE] ...
    quality.py calibrate [--out calibration.json]
    quality.py --only-report FILE

See README.md beside this file for what it measures and how.
"""

import argparse
import gzip
import json
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time

# One thread per training: set before torch is first imported (the parent imports it before
# the workers fork), so that no OpenMP pool exists to be inherited.
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CALIBRATION = os.path.join(HERE, "calibration.json")
# The grid of initial lrs the calibration tries with a constant lr (a factor of ~3.16).
GRID = {"sgd": [10 ** (k / 2) for k in range(-6, 3)], "adam": [10 ** (k / 2) for k in range(-9, -1)]}
HIGH_FACTOR = 5.6  # "too high": this many times the good lr
LOW_FACTOR = 0.1  # "too low" (Adam only): this many times the good lr
DESIGN_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101)
CADENCES = ("epoch", "step")
POINTS_KEPT = 200  # lr trace points kept per run


def load_tasks():
    import tasks

    return {t.name: t for t in tasks.all_tasks()}


# ---- one run ------------------------------------------------------------------------------

def run_one(spec):
    """Trains one case with one policy; returns the run's record (see README.md)."""
    import torch

    import schedules

    torch.set_num_threads(1)
    task = load_tasks()[spec["task"]]
    training = task.make(spec["optimizer"], spec["lr"], spec["seed"])
    reports = task.epochs * (training.steps_per_epoch if spec["cadence"] == "step" else 1)
    auto_model = None
    if spec.get("auto_model"):
        import importlib.util

        loader = importlib.util.spec_from_file_location("auto_model", spec["auto_model"])
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        auto_model = module.Auto
    job_id = re.sub(r"[^A-Za-z0-9._-]", "-", "-".join(
        str(spec[k]) for k in ("task", "optimizer", "lr_label", "seed", "cadence", "policy")))
    started = time.perf_counter()
    initial = training.val_loss()
    driver = schedules.make_driver(spec["policy"], training, spec["cadence"], spec["lr"],
                                   reports, spec.get("url"), f"{job_id}-{spec['run']}",
                                   auto_model)
    losses = train_epochs(task, training, driver)
    keep = max(1, math.ceil(len(driver.lrs) / POINTS_KEPT))
    return dict(spec, auto_model=None, auto_via=via(spec), initial=initial, losses=losses,
                final=losses[-1],
                best=min((v for v in losses if math.isfinite(v)), default=math.nan),
                lrs=driver.lrs[::keep], seconds=time.perf_counter() - started)


def train_epochs(task, training, driver):
    """Trains the task's epochs with driver, stopping at a validation loss that is not
    finite; returns the validation loss after each epoch."""
    losses = []
    for _ in range(task.epochs):
        finite = training.train_epoch(driver)
        val = training.val_loss() if finite else math.nan
        losses.append(val)
        if not math.isfinite(val):
            break
        driver.epoch_end(val)
    return losses


def via(spec):
    """How an auto run got its lrs: "model:PATH" or "service" (None for other policies)."""
    if not spec["policy"].startswith("auto"):
        return None
    return f"model:{spec['auto_model']}" if spec.get("auto_model") else "service"


# ---- the daemon ---------------------------------------------------------------------------

class Daemon:
    """A greedylrd of the benchmark's own, on a free port and a scratch database."""

    def __init__(self, path):
        self.dir = tempfile.TemporaryDirectory()
        self.log = open(os.path.join(self.dir.name, "daemon.log"), "w+")
        self.process = subprocess.Popen(
            [path, "--listen", "127.0.0.1:0", "--db", os.path.join(self.dir.name, "q.db"),
             "--log-level", "warn"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            raise SystemExit(f"greedylrd did not start: {line!r}")
        self.url = match.group(1)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.dir.cleanup()


# ---- the plan -----------------------------------------------------------------------------

def cases(task_list, calibration, seeds):
    """(task, optimizer, lr label, lr, seed) of every case and seed to run."""
    for task in task_list:
        for optimizer in ("sgd", "adam"):
            good = calibration[task.name][optimizer]["good"]
            labels = [("good", good), ("high", good * HIGH_FACTOR)]
            if optimizer == "adam":
                labels.append(("low", good * LOW_FACTOR))
            for label, lr in labels:
                for seed in seeds:
                    yield task, optimizer, label, lr, seed


def policies_of(task, optimizer):
    """The policies of a case; auto-nocap where auto gets a cap (SGD on a task with one)."""
    import schedules

    names = list(schedules.BASELINES) + ["auto"]
    if task.caps and optimizer == "sgd":
        names.append("auto-nocap")
    return names


def plan(args, task_list, calibration, seeds):
    specs = []
    for task, optimizer, label, lr, seed in cases(task_list, calibration, seeds):
        for cadence in CADENCES:
            for policy in policies_of(task, optimizer):
                specs.append({"task": task.name, "optimizer": optimizer, "lr_label": label,
                              "lr": lr, "seed": seed, "cadence": cadence, "policy": policy,
                              "held_out": task.held_out or seed in HELD_OUT_SEEDS})
    return specs


def key(run):
    """What makes two runs the same run. The lr value is in it so that runs made before a
    new calibration are not taken for the new lrs."""
    return (tuple(run[k] for k in ("task", "optimizer", "lr_label", "seed", "cadence",
                                   "policy")) + (float.hex(float(run["lr"])),))


def execute(specs, selected, url, auto_model, workers, reuse):
    """Trains two at a time, and returns a record for every spec trained or reused.

    With selected (--policies) the specs of those policies are trained, and every other
    spec is taken from reuse when it holds it (else left out): --reuse OLD --policies auto
    retrains auto and keeps OLD's baselines. Without it every spec is trained unless reuse
    holds it; auto runs through a model (--auto-model) are always trained again (the model
    is what changes), and an auto run is reused only if it ran the same way."""
    done = {key(r): r for r in reuse}
    todo = []
    for n, spec in enumerate(specs):
        spec = dict(spec, url=url, auto_model=auto_model, run=n)
        old = done.get(key(spec))
        reusable = (old is not None and old.get("auto_via") == via(spec)
                    and not (auto_model and spec["policy"].startswith("auto")))
        if (selected is None and not reusable) or (selected and spec["policy"] in selected):
            todo.append(spec)
        elif not reusable:
            done.pop(key(spec), None)
    print(f"quality: {len(specs)} runs, {len(todo)} to train", file=sys.stderr)
    started = time.perf_counter()
    results = []
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        for i, record in enumerate(pool.imap_unordered(run_one, todo, chunksize=1)):
            results.append(record)
            if (i + 1) % 100 == 0:
                print(f"quality: {i + 1}/{len(todo)} in {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
    kept = {**done, **{key(r): r for r in results}}
    return [kept[key(s)] for s in specs if key(s) in kept]


# ---- calibration --------------------------------------------------------------------------

def calibrate(out):
    """A constant lr over GRID for every task and optimizer (seed 0, epoch cadence): the
    good lr is the one with the lowest final validation loss."""
    import schedules  # noqa: F401  (loads torch the same way as the runs)

    task_list = list(load_tasks().values())
    specs = [{"task": t.name, "optimizer": o, "lr": lr, "seed": 0}
             for t in task_list for o in GRID for lr in GRID[o]]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        records = pool.map(calibrate_one, specs)
    result = {}
    for spec, final in zip(specs, records):
        entry = result.setdefault(spec["task"], {}).setdefault(spec["optimizer"], {"grid": {}})
        entry["grid"][repr(spec["lr"])] = final
    for task, optimizers in result.items():
        for optimizer, entry in optimizers.items():
            finite = {float(lr): v for lr, v in entry["grid"].items() if math.isfinite(v)}
            entry["good"] = min(finite, key=finite.get)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps({t: {o: e["good"] for o, e in v.items()} for t, v in result.items()}))


def calibrate_one(spec):
    """The final validation loss of a constant lr (NaN when the run diverged)."""
    import torch

    torch.set_num_threads(1)

    class Constant:
        def before_update(self, optimizer):
            pass

        def after_update(self, loss):
            return math.isfinite(loss)

    task = load_tasks()[spec["task"]]
    training = task.make(spec["optimizer"], spec["lr"], spec["seed"])
    val = math.nan
    for _ in range(task.epochs):
        if not training.train_epoch(Constant()):
            return math.nan
        val = training.val_loss()
        if not math.isfinite(val):
            return math.nan
    return val


# ---- overhead -----------------------------------------------------------------------------

def overhead(url, steps=2000):
    """Median µs of RemoteScheduler.step against a torch scheduler's step, one run each."""
    import torch

    import greedylr

    def timed(step):
        times = []
        for k in range(steps):
            started = time.perf_counter()
            step(1.0 / (1 + k))
            times.append(time.perf_counter() - started)
        times.sort()
        return times[len(times) // 2] * 1e6

    param = torch.nn.Parameter(torch.zeros(1))
    local = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([param], lr=0.1))
    remote = greedylr.RemoteScheduler(torch.optim.SGD([param], lr=0.1), "overhead", url=url,
                                      policy="auto", total_steps=steps)
    return {"remote_us": timed(remote.step), "local_us": timed(local.step), "steps": steps}


def save(data, path):
    """Writes the runs (and what else data holds) as JSON, replacing path at once."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


# ---- main ---------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["run", "calibrate"], default="run")
    parser.add_argument("--daemon", help="the greedylrd to run the service's policies on")
    parser.add_argument("--out", help="where to write every run (quality.json), or the "
                        "calibration (calibration.json beside this file)")
    parser.add_argument("--reuse", help="take matching runs from this earlier --out file")
    parser.add_argument("--only-report", metavar="FILE", help="report on FILE, train nothing")
    parser.add_argument("--held-out", action="store_true", help="run only the held-out part")
    parser.add_argument("--all", action="store_true", help="the design and held-out parts")
    parser.add_argument("--tasks", type=lambda s: s.split(","), help="only these tasks")
    parser.add_argument("--policies", type=lambda s: s.split(","), help="only these policies")
    parser.add_argument("--auto-model", help="run auto in process from this Python model")
    parser.add_argument("--plots", default=".", help="directory for the PNG plots")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import report

    if args.command == "calibrate":
        return calibrate(args.out or CALIBRATION)
    args.out = args.out or "quality.json"
    if args.only_report:
        # A file kept compressed (as doc/quality/quality.json.gz) is read as it is.
        opener = gzip.open if args.only_report.endswith(".gz") else open
        with opener(args.only_report, "rt") as f:
            data = json.load(f)
        stem = args.only_report[:-3] if args.only_report.endswith(".gz") else args.only_report
        return report.write(data, args.plots, os.path.splitext(stem)[0] + ".md")
    if not args.daemon:
        parser.error("--daemon is required to run the benchmark")
    with open(CALIBRATION) as f:
        calibration = json.load(f)
    task_list = [t for t in load_tasks().values() if not args.tasks or t.name in args.tasks]
    specs = []
    if not args.held_out:
        specs += plan(args, [t for t in task_list if not t.held_out], calibration, DESIGN_SEEDS)
    if args.held_out or args.all:
        specs += plan(args, task_list, calibration, HELD_OUT_SEEDS)
        specs += plan(args, [t for t in task_list if t.held_out], calibration, DESIGN_SEEDS)
    reuse = []
    if args.reuse:
        with open(args.reuse) as f:
            reuse = json.load(f)["runs"]
    daemon = Daemon(args.daemon)
    started = time.perf_counter()
    try:
        runs = execute(specs, args.policies, daemon.url, args.auto_model, args.workers, reuse)
        data = {"runs": runs, "seconds": time.perf_counter() - started,
                "calibration": calibration, "auto_model": bool(args.auto_model)}
        save(data, args.out)
        data["overhead"] = overhead(daemon.url)
        save(data, args.out)
    finally:
        daemon.stop()
    return report.write(data, args.plots, os.path.splitext(args.out)[0] + ".md")


if __name__ == "__main__":
    sys.exit(main())
