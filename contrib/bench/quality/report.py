"""The report of the quality benchmark: tables, win rates against the targets, one plot per
task, printed and written as markdown (the README carries the latest)."""

import math
import os

import schedules
import stats

# The targets of the auto policy.
POOLED_TARGET, POOLED_LOW_TARGET, EACH_TARGET, WORST_TARGET = 0.90, 0.80, 0.80, 0.10


def _fmt(v):
    if not math.isfinite(v):
        return "div."
    return f"{v:.4g}"


def _policies(runs):
    order = list(schedules.BASELINES) + ["auto", "auto-nocap"]
    present = {r["policy"] for r in runs}
    return [p for p in order if p in present]


def task_tables(runs):
    """Per task: mean ± sd of the final (and best) validation loss of each policy, by case."""
    lines = []
    cases = stats.by_case(runs)
    policies = _policies(runs)
    for task in sorted({r["task"] for r in runs}):
        lines.append(f"\n#### {task}: final validation loss, mean ± sd over seeds (best in brackets)\n")
        lines.append("| policy | " + " | ".join(
            f"{o} {l} {c}" for (t, o, l, c) in sorted(cases) if t == task) + " |")
        keys = [k for k in sorted(cases) if k[0] == task]
        lines.append("|---" * (len(keys) + 1) + "|")
        for policy in policies:
            cells = []
            for k in keys:
                seeds = cases[k]
                runs_p = [s[policy] for s in seeds.values() if policy in s]
                if not runs_p:
                    cells.append("")
                    continue
                finals = [r["final"] for r in runs_p]
                bests = [r["best"] for r in runs_p]
                if any(stats.diverged(r) for r in runs_p):
                    cells.append(f"div. {sum(stats.diverged(r) for r in runs_p)}/{len(runs_p)}")
                else:
                    cells.append(f"{stats.mean(finals):.4g} ± {stats.sd(finals):.2g} "
                                 f"({stats.mean(bests):.4g})")
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return lines


def win_table(runs, title):
    """Every policy's pooled win rate, and auto's against each baseline."""
    cases = stats.by_case(runs)
    policies = [p for p in _policies(runs) if p != "auto-nocap"]
    lines = [f"\n### {title}\n", "| policy | equal or better than the others (95% CI) |",
             "|---|---|"]
    for policy in policies:
        others = [p for p in policies if p != policy]
        rate, low, high = stats.win_rate(cases, policy, others)
        lines.append(f"| {policy} | {rate:.1%} [{low:.1%}, {high:.1%}] |")
    if "auto" in policies:
        lines += ["", "| auto against | equal or better (95% CI) |", "|---|---|"]
        for baseline in schedules.BASELINES:
            rate, low, high = stats.win_rate(cases, "auto", [baseline])
            lines.append(f"| {baseline} | {rate:.1%} [{low:.1%}, {high:.1%}] |")
    lines += matrix(cases, policies)
    return lines


def matrix(cases, policies):
    """Every policy (rows) against every other alone (columns): the share of paired runs
    where the row is equal or better, without intervals (they are in the pooled table and
    the targets); a row's worst cell says which schedule beats it."""
    lines = ["", "| equal or better than → | " + " | ".join(policies) + " |",
             "|---" * (len(policies) + 1) + "|"]
    for policy in policies:
        cells = []
        for other in policies:
            if other == policy:
                cells.append("")
                continue
            scores = stats.pair_scores(cases, policy, [other])
            values = [v for seeds in scores.values() for pair in seeds.values() for v in pair]
            cells.append(f"{sum(values) / len(values):.0%}" if values else "")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return lines


def targets(runs):
    """A PASS or MISS line for each target of the auto policy (none without auto runs)."""
    if not any(r["policy"] == "auto" for r in runs):
        return []
    cases = stats.by_case(runs)
    others = [p for p in _policies(runs) if p not in ("auto", "auto-nocap")]
    lines = ["", "| target | measured | |", "|---|---|---|"]

    def line(what, measured, ok):
        lines.append(f"| {what} | {measured} | {'PASS' if ok else '**MISS**'} |")

    rate, low, _ = stats.win_rate(cases, "auto", others)
    line(f"auto equal or better, pooled >= {POOLED_TARGET:.0%}, lower bound >= "
         f"{POOLED_LOW_TARGET:.0%}", f"{rate:.1%}, lower bound {low:.1%}",
         rate >= POOLED_TARGET and low >= POOLED_LOW_TARGET)
    each = {b: stats.win_rate(cases, "auto", [b])[0] for b in schedules.BASELINES}
    weakest = min(each, key=each.get)
    line(f"against each baseline >= {EACH_TARGET:.0%}", f"lowest {each[weakest]:.1%} ({weakest})",
         each[weakest] >= EACH_TARGET)
    excess, case, best = stats.worst_case(cases, "auto", schedules.BASELINES)
    line(f"worst case <= {WORST_TARGET:.0%} above the best baseline",
         f"{excess:+.1%} ({' '.join(case)}, best {best})", excess <= WORST_TARGET)
    count, pairs = stats.divergences(cases, "auto")
    line("runs diverging where constant does not: 0", f"{count} of {pairs}", count == 0)
    # The cap bounds plain gradient steps: the SGD cases are the ones that get it.
    nmf = {k: v for k, v in cases.items() if k[:3] == ("nmf", "sgd", "high")}
    if nmf:
        beaten = []
        for k, seeds in nmf.items():
            ours = stats.mean_final(seeds, "auto")
            beaten += [ours < stats.mean_final(seeds, b) for b in schedules.BASELINES]
        line("NMF (SGD) at a too-high lr with lr_cap better than every baseline",
             f"{sum(beaten)} of {len(beaten)} (case, baseline) pairs", all(beaten))
    return lines


def plots(runs, directory):
    """One PNG per task: validation loss per epoch and lr per report of every policy, for
    Adam at the too-high lr, seed 0, at both cadences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    first_seed = min(r["seed"] for r in runs)
    for task in sorted({r["task"] for r in runs}):
        chosen = [r for r in runs if r["task"] == task and r["optimizer"] == "adam"
                  and r["lr_label"] == "high" and r["seed"] == first_seed]
        if not chosen:
            continue
        figure, axes = plt.subplots(2, 2, figsize=(12, 7))
        for column, cadence in enumerate(("epoch", "step")):
            for run in sorted((r for r in chosen if r["cadence"] == cadence),
                              key=lambda r: r["policy"]):
                style = {"linewidth": 2.5, "color": "black"} if run["policy"] == "auto" else {}
                axes[0][column].plot(range(1, len(run["losses"]) + 1), run["losses"],
                                     label=run["policy"], **style)
                axes[1][column].plot(run["lrs"], label=run["policy"], **style)
            axes[0][column].set_title(f"{task}, Adam at a too-high lr, a report per {cadence}")
            axes[0][column].set_yscale("log")
            axes[0][column].set_xlabel("epoch")
            axes[0][column].set_ylabel("validation loss")
            axes[1][column].set_yscale("log")
            axes[1][column].set_xlabel("report (kept points)")
            axes[1][column].set_ylabel("lr")
        axes[0][0].legend(fontsize=7, ncol=2)
        figure.tight_layout()
        path = os.path.join(directory, f"quality-{task}.png")
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written


def write(data, plot_dir, markdown_path):
    """Prints the report, writes it as markdown and the plots; returns 0."""
    runs = data["runs"]
    design = [r for r in runs if not r["held_out"]]
    held_out = [r for r in runs if r["held_out"]]
    lines = [f"Runs: {len(runs)} ({len(design)} design, {len(held_out)} held out), "
             f"{data['seconds'] / 60:.1f} min."]
    if data.get("auto_model"):
        lines.append("auto ran in process from a model (--auto-model), not through the service.")
    parts = [(part, title) for part, title in ((design, "Design set"),
                                                (held_out, "Held-out set")) if part]
    for part, title in parts:
        lines += win_table(part, f"{title}: win rates (final loss within 1%)")
        lines += targets(part)
    cost = data.get("overhead")
    if cost:
        lines.append(f"\nRemoteScheduler.step: median {cost['remote_us']:.0f} µs per call, an "
                     f"in-process torch scheduler {cost['local_us']:.0f} µs "
                     f"({cost['steps']} calls each).")
    # Separate tables: a design task's held-out seeds must not enter its design means.
    for part, title in parts:
        lines.append(f"\n### {title}: per task")
        lines += task_tables(part)
    text = "\n".join(lines) + "\n"
    print(text)
    with open(markdown_path, "w") as f:
        f.write(text)
    os.makedirs(plot_dir, exist_ok=True)
    for path in plots(runs, plot_dir):
        print(f"plot: {path}")
    return 0
