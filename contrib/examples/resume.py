#!/usr/bin/python3
"""Restarting a training from a checkpoint gives exactly the learning rates of the first run.

The first run trains --steps steps, saving a checkpoint (model, optimizer and scheduler
state) after --checkpoint steps, and goes on to the end, as a run would before it crashed.
Then a new process restarts from the checkpoint: loading the scheduler's state rewinds
the job on greedylrd to the checkpoint's step, so the steps after it are scheduled again
from the same state. The restart prints the same losses and learning rates as the first
run did from the checkpoint on; the script says so and exits 0, or exits 1 if not.

    PYTHONPATH=contrib/python python3 contrib/examples/resume.py [--url URL] [--job ID]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

import greedylr

FEATURES = 8


def batch(step):
    """The data of a step: the same in every run, so the runs can be compared exactly."""
    generator = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(64, FEATURES, generator=generator)
    y = torch.tanh(x[:, :1] * 2) - x[:, 1:2] * x[:, 2:3]
    return x, y


def setup(url, job_id):
    """The model, optimizer and scheduler, as the training script builds them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 32), torch.nn.Tanh(),
                                torch.nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, patience=1,
                                         min_lr=0.005, max_lr=0.5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, first, last, checkpoint=None):
    """Trains steps first..last-1; returns one {"step", "loss", "lr"} per step (lr: the
    learning rate the step was trained with). Saves a checkpoint to checkpoint["path"]
    after checkpoint["steps"] steps."""
    records = []
    for step in range(first, last):
        x, y = batch(step)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step(loss)
        records.append({"step": step, "loss": loss.item(), "lr": lr})
        if checkpoint and step + 1 == checkpoint["steps"]:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict()}, checkpoint["path"])
    return records


def restart(url, job_id, path, steps):
    """The restarted process: loads the checkpoint, trains to the end, prints its records
    as one JSON line."""
    model, optimizer, scheduler = setup(url, job_id)
    state = torch.load(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])  # rewinds the job to the checkpoint
    print(json.dumps(train(model, optimizer, scheduler, scheduler.last_epoch, steps)))


def show(title, records):
    print(title)
    for r in records:
        print(f"  step {r['step']:3d}  loss {r['loss']:.6f}  lr {r['lr']!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=greedylr.DEFAULT_URL, help="where greedylrd listens")
    parser.add_argument("--job", help="the job id (default: a new one; an earlier run's id "
                                      "continues that run)")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--checkpoint", type=int, default=10, help="steps before it")
    parser.add_argument("--restart-from", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job is None:
        args.job = greedylr.new_job_id("resume-example")
    print(f"job {args.job} at {args.url}", flush=True)
    torch.set_num_threads(1)  # the same arithmetic in both runs, bit for bit
    if args.restart_from:
        restart(args.url, args.job, args.restart_from, args.steps)
        return 0
    try:
        greedylr.Client(args.url).delete(args.job)  # a fresh job for the demonstration
    except greedylr.NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="greedylr-resume-") as directory:
        path = os.path.join(directory, "checkpoint.pt")
        first = train(*setup(args.url, args.job), 0, args.steps,
                      {"path": path, "steps": args.checkpoint})
        show(f"first run, checkpoint after step {args.checkpoint - 1}:", first)
        answer = subprocess.run([sys.executable, __file__, "--url", args.url, "--job", args.job,
                                 "--steps", str(args.steps), "--restart-from", path],
                                stdout=subprocess.PIPE, check=True, text=True)
        again = json.loads(answer.stdout.splitlines()[-1])
    show(f"restarted from the checkpoint:", again)
    same = again == first[args.checkpoint:]
    print("the restart got the same losses and learning rates as the first run"
          if same else "the restart differs from the first run")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
