#!/usr/bin/python3
"""Data-parallel training on 2 CPU processes (gloo), one learning rate for both.

Each rank trains DistributedDataParallel on its own half of the data and reports its own
loss every step: greedylr.RemoteScheduler finds the rank and world size from
torch.distributed, and greedylrd decides once per step, on the mean of the ranks' losses,
answering every rank the same lr. Every rank prints the lr it used at each step.

    PYTHONPATH=contrib/python python3 contrib/examples/torch_ddp.py [--url URL] [--job ID]
"""

import argparse
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import greedylr

WORLD_SIZE = 2
FEATURES = 8


def worker(rank, url, job_id, steps, rendezvous):
    """One rank: trains steps steps and prints "rank R step S loss L lr X" per step."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=WORLD_SIZE)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DistributedDataParallel(torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, patience=1,
                                         min_lr=0.005, max_lr=0.2)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    target = torch.arange(1.0, FEATURES + 1) / FEATURES
    for step in range(steps):
        x = torch.randn(32, FEATURES, generator=data)
        y = (x @ target).unsqueeze(1)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step(loss)  # this rank's own loss; the answer is the same on every rank
        # One write per line, so that the ranks' lines do not interleave.
        sys.stdout.write(f"rank {rank} step {step} loss {loss.item()!r} lr {lr!r}\n")
        sys.stdout.flush()
    dist.barrier()
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=greedylr.DEFAULT_URL, help="where greedylrd listens")
    parser.add_argument("--job", help="the job id (default: a new one; an earlier run's id "
                                      "continues that run)")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    if args.job is None:
        args.job = greedylr.new_job_id("torch-ddp")
    print(f"job {args.job} at {args.url}", flush=True)
    with tempfile.TemporaryDirectory(prefix="greedylr-ddp-") as directory:
        rendezvous = os.path.join(directory, "rendezvous")
        mp.spawn(worker, args=(args.url, args.job, args.steps, rendezvous),
                 nprocs=WORLD_SIZE, join=True)
    history = greedylr.Client(args.url).history(args.job)
    print(f"the service decided {len(history)} steps, each on "
          f"{sorted({point.get('ranks', 1) for point in history})} ranks")


if __name__ == "__main__":
    main()
