#!/usr/bin/python3
"""Trains a small network on synthetic data, its learning rate scheduled by greedylrd.

The one line that differs from a training with PyTorch's own plateau scheduler is the
scheduler's construction: greedylr.RemoteScheduler(optimizer, job_id) instead of
torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer). Each epoch prints the validation
loss and the learning rate the epoch was trained with.

    greedylrd &                                   # or: sh contrib/quickstart.sh run
    PYTHONPATH=contrib/python python3 contrib/examples/torch_mlp.py [--url URL] [--job ID]
"""

import argparse

import torch

import greedylr

FEATURES = 8
HIDDEN = 32


def make_data(samples, seed):
    """A regression task: y = sin(x . w) + x_0 * x_1, plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, FEATURES, generator=generator)
    w = torch.randn(FEATURES, generator=generator) / FEATURES ** 0.5
    y = torch.sin(x @ w) + x[:, 0] * x[:, 1] + 0.05 * torch.randn(samples, generator=generator)
    return x, y.unsqueeze(1)


def train(url, job_id, epochs=15, batch=64, seed=0, log=print):
    """Trains for epochs; returns one {"epoch", "loss", "lr"} per epoch, where lr is the
    learning rate the optimizer used in that epoch and loss the validation loss after it."""
    torch.manual_seed(seed)
    x, y = make_data(1024, seed)
    x_train, y_train, x_val, y_val = x[:768], y[:768], x[768:], y[768:]
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(HIDDEN, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    # GreedyLR raises the lr after more than 2 improving epochs, lowers it after more than
    # 2 that are not, between 0.001 and 0.2.
    scheduler = greedylr.RemoteScheduler(optimizer, job_id, url=url, patience=2,
                                         min_lr=0.001, max_lr=0.2)
    loss_fn = torch.nn.MSELoss()
    order = torch.Generator().manual_seed(seed + 1)
    records = []
    for epoch in range(epochs):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        for indices in torch.randperm(len(x_train), generator=order).split(batch):
            optimizer.zero_grad()
            loss_fn(model(x_train[indices]), y_train[indices]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x_val), y_val).item()
        scheduler.step(val_loss)
        records.append({"epoch": epoch, "loss": val_loss, "lr": lr})
        log(f"epoch {epoch:3d}  val_loss {val_loss:.6f}  lr {lr!r}  "
            f"({scheduler.last_answer['event']}, next lr {scheduler.get_last_lr()[0]!r})")
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=greedylr.DEFAULT_URL, help="where greedylrd listens")
    parser.add_argument("--job", help="the job id (default: a new one; an earlier run's id "
                                      "continues that run)")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    if args.job is None:
        args.job = greedylr.new_job_id("torch-mlp")
    print(f"job {args.job} at {args.url}", flush=True)
    records = train(args.url, args.job, args.epochs)
    print(f"validation loss {records[0]['loss']:.6f} -> {records[-1]['loss']:.6f}")


if __name__ == "__main__":
    main()
