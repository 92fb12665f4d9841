#!/usr/bin/python3
"""What RemoteScheduler costs the training thread, against an in-process torch scheduler.

It starts a greedylrd (on a free port, with a temporary database) and trains a small MLP
on synthetic regression data (fixed seed: every run starts from the same weights and sees
the same batches), with one scheduler step per optimizer step, three ways:

  inprocess  torch.optim.lr_scheduler.StepLR(step_size, gamma)
  sync       RemoteScheduler(policy="step", step_size, gamma): step() waits for the answer
  async      the same with asynchronous=True: step() hands the report to the scheduler's
             thread, and the next optimizer.step() writes the answer (waiting for it)

The remote step() is given the loss tensor, as a training would call it. With
time.perf_counter_ns it times, on the training thread, each scheduler.step() call, each
optimizer.step() (where the asynchronous scheduler waits for the answer not yet there)
and each whole training step (forward, backward, optimizer.step(), scheduler.step()).
The three modes take turns in rounds (--rounds; the order rotates from round to round),
so that a busy spell of the machine falls on all alike, and the table shows the median
over the rounds of each round's median and 90th percentile of step(), of its medians of
optimizer.step() and of the training step, and of that last median's ratio to the
in-process run of the same round.

The remote jobs use the "step" policy, whose lr after the report of step s is
lr0 * gamma^floor((s + 1) / step_size), StepLR's lr after s + 1 calls: the lr used at every
optimizer step is compared between the modes (sync and async must agree exactly, StepLR
to within rounding), and so is the final loss on the whole data set.

    /usr/bin/python3 contrib/bench/remote_step.py [--daemon build/release/src/greedylrd]
        [--steps 2000] [--rounds 3]

Build the daemon optimized and without sanitizers (sh contrib/quickstart.sh bench does).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import greedylr  # noqa: E402
from bench import Server  # noqa: E402  (the daemon started as the other benchmarks start it)

MODES = ("inprocess", "sync", "async")
# The target: the training thread's median step() in asynchronous mode.
TARGET_ASYNC_STEP_US = 50.0


def log(message):
    print(f"remote_step: {message}", file=sys.stderr, flush=True)


def make_data(args):
    """Inputs and targets of a noisy random two-layer teacher, the same in every run."""
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.samples, args.inputs, generator=generator)
    teacher = torch.randn(args.inputs, args.hidden, generator=generator) / args.inputs ** 0.5
    y = torch.tanh(x @ teacher).sum(dim=1, keepdim=True) / args.hidden ** 0.5
    y += 0.05 * torch.randn(y.shape, generator=generator)
    return x, y


def make_model(args):
    torch.manual_seed(args.seed + 1)
    return torch.nn.Sequential(
        torch.nn.Linear(args.inputs, args.hidden), torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, args.hidden), torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, 1))


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def train(args, mode, data, url, job_id, steps):
    """One training run; returns its times (ns) of each scheduler.step(), training step
    and optimizer.step(), the lr of every optimizer step and the final loss over the
    whole data set."""
    x, y = data
    model = make_model(args)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    if mode == "inprocess":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, args.step_size, args.gamma)
    else:
        scheduler = greedylr.RemoteScheduler(
            optimizer, job_id, url, policy="step", step_size=args.step_size,
            gamma=args.gamma, asynchronous=(mode == "async"))
    # Every remote step() reports the loss (kept in the job's history), as a training
    # would; a "step" policy could do without it. StepLR takes none.
    metric = {"tensor": lambda loss: loss, "float": float,
              "none": lambda loss: None}[args.metric]
    loss_fn = torch.nn.MSELoss()
    batches = args.samples // args.batch
    step_ns, train_ns, optimizer_ns, lrs = [], [], [], []
    clock = time.perf_counter_ns
    for step in range(steps):
        first = (step % batches) * args.batch
        xb, yb = x[first:first + args.batch], y[first:first + args.batch]
        started = clock()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        stepping = clock()
        optimizer.step()
        stepped = clock()
        # After optimizer.step() the param group holds the lr that step used, whichever
        # the mode (the asynchronous scheduler writes it just before the step).
        lrs.append(optimizer.param_groups[0]["lr"])
        before = clock()
        if mode == "inprocess":
            scheduler.step()
        else:
            scheduler.step(metric(loss))
        ended = clock()
        step_ns.append(ended - before)
        train_ns.append(ended - started)
        optimizer_ns.append(stepped - stepping)
    if mode != "inprocess":
        scheduler.close()
    with torch.no_grad():
        final = float(loss_fn(model(x), y))
    return step_ns, train_ns, optimizer_ns, lrs, final


def summary(step_ns, train_ns, optimizer_ns):
    return {"step_median_us": statistics.median(step_ns) / 1000,
            "step_p90_us": percentile(step_ns, 0.9) / 1000,
            "train_median_us": statistics.median(train_ns) / 1000,
            "optimizer_median_us": statistics.median(optimizer_ns) / 1000}


def table(results, args):
    def over_rounds(mode, key):
        return statistics.median(r[mode][key] for r in results)

    lines = [f"{args.steps} steps x {args.rounds} rounds, MLP {args.inputs}-{args.hidden}-"
             f"{args.hidden}-1, batch {args.batch}, torch threads {torch.get_num_threads()}, "
             f"metric {args.metric}; medians over the rounds",
             "",
             "| mode | step() median | step() p90 | optimizer.step() median "
             "| training step median | vs in-process |",
             "|---|---|---|---|---|---|"]
    for mode in MODES:
        ratio = over_rounds(mode, "ratio")
        lines.append(f"| {mode} | {over_rounds(mode, 'step_median_us'):.1f} µs | "
                     f"{over_rounds(mode, 'step_p90_us'):.1f} µs | "
                     f"{over_rounds(mode, 'optimizer_median_us'):.1f} µs | "
                     f"{over_rounds(mode, 'train_median_us'):.1f} µs | {ratio:.2f}x |")
    async_step = over_rounds("async", "step_median_us")
    met = "met" if async_step <= TARGET_ASYNC_STEP_US else "NOT met"
    lines += ["", f"target: async step() median <= {TARGET_ASYNC_STEP_US:.0f} µs: "
              f"{async_step:.1f} µs, {met}"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daemon", default="build/release/src/greedylrd",
                        help="the greedylrd to start (default %(default)s)")
    parser.add_argument("--steps", type=int, default=2000,
                        help="optimizer steps per run, one report each (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the three modes (medians are shown; default "
                             "%(default)s)")
    parser.add_argument("--step-size", type=int, default=500,
                        help="StepLR's and the step policy's step_size (default %(default)s)")
    parser.add_argument("--gamma", type=float, default=0.5, help="(default %(default)s)")
    parser.add_argument("--lr", type=float, default=0.05,
                        help="initial lr of SGD with momentum 0.9 (default %(default)s)")
    parser.add_argument("--metric", choices=("tensor", "float", "none"), default="tensor",
                        help="what the remote step() is given: the loss tensor, "
                             "its float, or nothing (default %(default)s)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's intra-op threads (default %(default)s, leaving the "
                             "other CPUs to the daemon and the reporter thread)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.access(args.daemon, os.X_OK):
        sys.exit(f"remote_step: no greedylrd at {args.daemon} (build it: see --help)")
    torch.set_num_threads(args.threads)
    data = make_data(args)
    results, reference = [], {}
    with tempfile.TemporaryDirectory(prefix="greedylr-remote-step-") as work:
        daemon = Server([args.daemon, "--db", os.path.join(work, "bench.db"),
                         "--log-level", "warn"])
        try:
            # Untimed warm-up of torch and of the daemon's first job.
            for mode in MODES:
                train(args, mode, data, daemon.url, f"warmup-{mode}", min(200, args.steps))
            for round_ in range(args.rounds):
                order = MODES[round_ % 3:] + MODES[:round_ % 3]
                result = {}
                for mode in order:
                    step_ns, train_ns, optimizer_ns, lrs, final = train(
                        args, mode, data, daemon.url, f"round{round_}-{mode}", args.steps)
                    result[mode] = summary(step_ns, train_ns, optimizer_ns)
                    result[mode]["final"] = final
                    result[mode]["lrs"] = lrs
                    log(f"round {round_ + 1} {mode}: step() median "
                        f"{result[mode]['step_median_us']:.1f} µs, training step median "
                        f"{result[mode]['train_median_us']:.1f} µs, final loss {final!r}")
                for mode in MODES:
                    result[mode]["ratio"] = (result[mode]["train_median_us"]
                                             / result["inprocess"]["train_median_us"])
                results.append(result)
                reference = result
        finally:
            daemon.stop()
    # The lrs and final losses are the same in every round (same seed, same data).
    lrs = {mode: reference[mode]["lrs"] for mode in MODES}
    finals = {mode: reference[mode]["final"] for mode in MODES}
    same_lrs = lrs["sync"] == lrs["async"]
    worst = max(abs(a - b) / b for a, b in zip(lrs["inprocess"], lrs["sync"]))
    print(table(results, args))
    print(f"lrs: sync and async {'identical' if same_lrs else 'DIFFER'} at all "
          f"{args.steps} steps; StepLR's within {worst:.1e} relative; last "
          f"{lrs['inprocess'][-1]!r} / {lrs['sync'][-1]!r} / {lrs['async'][-1]!r}")
    print("final loss: " + ", ".join(f"{mode} {finals[mode]!r}" for mode in MODES))
    consistent = all(r[m]["final"] == finals[m] for r in results for m in MODES)
    if not consistent:
        print("final losses differ between rounds")
    if not same_lrs or finals["sync"] != finals["async"] or not consistent:
        sys.exit(1)


if __name__ == "__main__":
    main()
