#!/usr/bin/python3
"""Stochastic non-negative matrix factorization, V ~ W H, with the auto policy and a
stability cap computed at every step.

For f(W, H) = 1/2 ||V - W H||_F^2 the gradient's Lipschitz constant is at most
L = sigma_max(W)^2 + sigma_max(H)^2 + ||W H - V||_F, so a gradient step of size 1/L is
stable. Each report carries lr_cap = 1/L at the point the next step starts from, and the
answer never exceeds it: a start at a rate far too high (the default here, 3.0) trains instead of diverging.
Run it with --no-cap to see the same start diverge.

    greedylrd &                                   # or: sh contrib/quickstart.sh run
    PYTHONPATH=contrib/python python3 contrib/examples/nmf_cap.py [--url URL] [--job ID]
"""

import argparse
import math

import torch

import greedylr

ROWS, COLUMNS, RANK = 60, 200, 5


def make_matrix(seed):
    """A non-negative matrix of rank RANK plus a little non-negative noise, scaled to mean 1."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(ROWS, RANK, generator=generator)
    h = torch.rand(RANK, COLUMNS, generator=generator)
    v = w @ h + 0.01 * torch.rand(ROWS, COLUMNS, generator=generator)
    return v / v.mean()


def stable_step(w, h, v):
    """1/L for the gradient of 1/2 ||v - w h||_F^2 (see the module's docstring)."""
    sigma_w = torch.linalg.matrix_norm(w, ord=2).item()
    sigma_h = torch.linalg.matrix_norm(h, ord=2).item()
    residual = torch.linalg.matrix_norm(w @ h - v).item()
    return 1.0 / (sigma_w ** 2 + sigma_h ** 2 + residual)


def train(url, job_id, lr=3.0, epochs=10, batch=40, seed=0, cap=True, log=print):
    """Trains; returns one {"epoch", "loss"} per epoch, loss being the whole objective per
    entry (NaN once diverged)."""
    v = make_matrix(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    scale = math.sqrt(v.mean().item() / RANK)
    w = (scale * torch.rand(ROWS, RANK, generator=generator)).requires_grad_()
    h = (scale * torch.rand(RANK, COLUMNS, generator=generator)).requires_grad_()
    optimizer = torch.optim.SGD([w, h], lr=lr)
    steps_per_epoch = COLUMNS // batch
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, policy="auto",
                                         total_steps=epochs * steps_per_epoch)
    # The bound of the whole matrix holds for every minibatch of its columns. The service
    # caps the rate of each step after the first; the first is the trainer's to cap.
    with torch.no_grad():
        bound = stable_step(w, h, v) if cap else None
    if bound is not None:
        for group in optimizer.param_groups:
            group["lr"] = min(group["lr"], bound)
    records = []
    for epoch in range(epochs):
        for columns in torch.randperm(COLUMNS, generator=generator).split(batch):
            optimizer.zero_grad()
            # The sum over a minibatch of columns, scaled so that an epoch's steps add up
            # to the whole objective's gradient; H's other columns get no gradient.
            loss = 0.5 * ((v[:, columns] - w @ h[:, columns]) ** 2).sum()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                w.clamp_(min=0)
                h.clamp_(min=0)
                # The cap of the next step, at the point it starts from.
                bound = stable_step(w, h, v) if cap else None
            scheduler.step(loss.item(), lr_cap=bound)
        with torch.no_grad():
            total = (0.5 * ((v - w @ h) ** 2).mean()).item()
        records.append({"epoch": epoch, "loss": total})
        log(f"epoch {epoch:3d}  loss {total:.6g}  lr {optimizer.param_groups[0]['lr']!r}  "
            f"({scheduler.last_answer['event']})")
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=greedylr.DEFAULT_URL, help="where greedylrd listens")
    parser.add_argument("--job", help="the job id (default: a new one; an earlier run's id "
                                      "continues that run)")
    parser.add_argument("--lr", type=float, default=3.0, help="the initial learning rate")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-cap", action="store_true", help="report no lr_cap")
    args = parser.parse_args()
    if args.job is None:
        args.job = greedylr.new_job_id("nmf-cap")
    print(f"job {args.job} at {args.url}", flush=True)
    records = train(args.url, args.job, args.lr, args.epochs, cap=not args.no_cap)
    print(f"loss {records[0]['loss']:.6g} -> {records[-1]['loss']:.6g}")


if __name__ == "__main__":
    main()
