"""The statistics of the quality benchmark: paired win rates with a cluster bootstrap, the
worst case against the best baseline, and divergences.

A case is a task, an optimizer, an initial lr and a cadence; its runs differ by seed and
by policy, and runs of one case and seed are paired (the same initial weights and
minibatches). Policy P is "equal or better" than Q on a pair when P's final validation
loss is at most 1% above Q's; a diverged run (a final loss that is not finite, or above
DIVERGED_FACTOR times the initial one) loses to one that did not, and two diverged runs
tie.
"""

import math
import random
from collections import defaultdict

TOLERANCE = 1.01
DIVERGED_FACTOR = 10.0
BOOTSTRAP_RESAMPLES = 2000


def diverged(run):
    final = run["final"]
    return not math.isfinite(final) or final > DIVERGED_FACTOR * run["initial"]


def equal_or_better(p, q):
    """1 when run p is equal or better than run q (see the module's docstring), else 0."""
    dp, dq = diverged(p), diverged(q)
    if dp or dq:
        return 1 if dq else 0
    return 1 if p["final"] <= TOLERANCE * q["final"] else 0


def case_key(run):
    return (run["task"], run["optimizer"], run["lr_label"], run["cadence"])


def by_case(runs):
    """{case: {seed: {policy: run}}}."""
    cases = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        cases[case_key(run)][run["seed"]][run["policy"]] = run
    return cases


def pair_scores(cases, policy, others):
    """{case: {seed: [0/1 for each other policy present]}}."""
    scores = {}
    for case, seeds in cases.items():
        per_seed = {}
        for seed, runs in seeds.items():
            if policy in runs:
                per_seed[seed] = [equal_or_better(runs[policy], runs[q]) for q in others
                                  if q in runs and q != policy]
        if per_seed:
            scores[case] = per_seed
    return scores


def _rate(scores, case_sample, seed_samples):
    wins = total = 0
    for case, seeds in zip(case_sample, seed_samples):
        for seed in seeds:
            values = scores[case][seed]
            wins += sum(values)
            total += len(values)
    return wins / total if total else float("nan")


def win_rate(cases, policy, others, seed=2026):
    """(rate, low, high): the pooled rate and its 95% cluster bootstrap interval, which
    resamples the cases, then the seeds within each case drawn."""
    scores = pair_scores(cases, policy, others)
    keys = sorted(scores)
    if not keys:
        return float("nan"), float("nan"), float("nan")
    rate = _rate(scores, keys, [sorted(scores[k]) for k in keys])
    rng = random.Random(seed)
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        drawn = [rng.choice(keys) for _ in keys]
        seeds = [[rng.choice(sorted(scores[k])) for _ in scores[k]] for k in drawn]
        samples.append(_rate(scores, drawn, seeds))
    samples.sort()
    return rate, samples[int(0.025 * len(samples))], samples[int(0.975 * len(samples)) - 1]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def sd(values):
    values = list(values)
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def mean_final(seeds, policy):
    """A policy's mean final loss over the seeds of a case; inf when any run diverged."""
    runs = [r[policy] for r in seeds.values() if policy in r]
    if not runs or any(diverged(r) for r in runs):
        return math.inf
    return mean(r["final"] for r in runs)


def worst_case(cases, policy, baselines):
    """(excess, case, best baseline): the case where the policy's mean final loss is the
    farthest above the best baseline's, as a fraction (0.1 = 10% higher)."""
    worst = (-math.inf, None, None)
    for case, seeds in cases.items():
        ours = mean_final(seeds, policy)
        best_name, best = min(((b, mean_final(seeds, b)) for b in baselines),
                              key=lambda item: item[1])
        if ours == math.inf and best == math.inf:
            excess = 0.0
        elif best == 0 or best == math.inf:
            excess = math.inf if ours > best else 0.0
        else:
            excess = ours / best - 1
        if excess > worst[0]:
            worst = (excess, case, best_name)
    return worst


def divergences(cases, policy, reference="constant"):
    """Runs where the policy diverged and the reference did not, out of the pairs."""
    count = pairs = 0
    for seeds in cases.values():
        for runs in seeds.values():
            if policy in runs and reference in runs:
                pairs += 1
                count += diverged(runs[policy]) and not diverged(runs[reference])
    return count, pairs
