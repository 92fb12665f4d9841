"""The examples of contrib/examples, run as a user would run them, against a real daemon."""

import os
import re
import subprocess
import sys

from conftest import EXAMPLES, PACKAGE, SLOW

# Seconds an example may take (torch examples take a few seconds; more under valgrind).
EXAMPLE_TIMEOUT = 120


def run(command, **extra_env):
    """Runs an example; returns its standard output, failing with its output if it fails."""
    env = dict(os.environ, PYTHONPATH=PACKAGE, OMP_NUM_THREADS="1", **extra_env)
    answer = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=EXAMPLE_TIMEOUT * SLOW)
    assert answer.returncode == 0, f"{command} exited {answer.returncode}:\n{answer.stdout}"
    return answer.stdout


def example(name):
    return os.path.join(EXAMPLES, name)


def test_curl_script_walks_through_the_whole_api(daemon, job_id):
    output = run(["sh", example("curl.sh"), daemon.url], GREEDYLR_JOB=job_id)
    assert '{"status":"ok"}' in output
    assert output.count(f'"id":"{job_id}","policy":"greedylr"') >= 2  # created, then again
    assert f'"job":"{job_id}","step":2,"lr":0.10526315789473685,"event":"increase"' in output
    assert '"replayed":true' in output
    assert re.search(r"^step,loss,lr,event\n(.*\n){9}9,NaN,0\.1,hold$", output, re.M)
    assert '"last_step":6,"reports":7,"rewinds":1' in output
    assert '"status":"finished"' in output
    assert '"status":409' in output and "takes no more reports" in output
    assert re.search(r"^204$", output, re.M)
    assert output.rstrip().endswith(f'"status":404,"detail":"job {job_id} does not exist"}}')


def test_torch_mlp_learns_and_the_service_holds_the_lrs_it_used(daemon, client, job_id):
    output = run([sys.executable, example("torch_mlp.py"), "--url", daemon.url,
                  "--job", job_id, "--epochs", "12"])
    epochs = re.findall(r"^epoch +(\d+) +val_loss (\S+) +lr (\S+) ", output, re.M)
    assert [int(e[0]) for e in epochs] == list(range(12)), output
    losses = [float(e[1]) for e in epochs]
    used = [float(e[2]) for e in epochs]
    assert losses[-1] < 0.5 * losses[0], output
    history = client.history(job_id)
    assert [p["step"] for p in history] == list(range(12))
    # The lr of epoch e is the one answered to the report of epoch e-1.
    assert used == [client.get_job(job_id)["initial_lr"]] + [p["lr"] for p in history[:-1]]
    assert len(set(used)) > 1, "the lr never changed: the test shows nothing"


def test_an_example_run_again_starts_a_new_job_and_says_which(daemon, client):
    """Without --job each run is a job of its own (not the last run's, continued), and
    the example prints its id first."""
    def run_once():
        output = run([sys.executable, example("torch_mlp.py"), "--url", daemon.url,
                      "--epochs", "2"])
        first = output.splitlines()[0]
        match = re.fullmatch(r"job (torch-mlp-\S+) at " + re.escape(daemon.url), first)
        assert match, output
        return match.group(1)

    first, second = run_once(), run_once()
    assert first != second
    for job_id in (first, second):
        assert [p["step"] for p in client.history(job_id)] == [0, 1]


def test_torch_ddp_ranks_use_the_same_lr_at_every_step(daemon, client, job_id):
    steps = 10
    output = run([sys.executable, example("torch_ddp.py"), "--url", daemon.url,
                  "--job", job_id, "--steps", str(steps)])
    used = {0: {}, 1: {}}
    for rank, step, lr in re.findall(r"^rank (\d) step (\d+) loss \S+ lr (\S+)$", output, re.M):
        used[int(rank)][int(step)] = float(lr)
    assert sorted(used[0]) == sorted(used[1]) == list(range(steps)), output
    assert used[0] == used[1]
    history = client.history(job_id)
    assert [p["step"] for p in history] == list(range(steps))
    assert all(p.get("ranks") == 2 for p in history), history
    assert [used[0][s] for s in range(1, steps)] == [p["lr"] for p in history[:-1]]
    assert len(set(used[0].values())) > 1, "the lr never changed: the test shows nothing"


def test_resume_continues_with_the_lrs_of_the_first_run(daemon, client, job_id):
    output = run([sys.executable, example("resume.py"), "--url", daemon.url, "--job", job_id,
                  "--steps", "16", "--checkpoint", "6"])
    assert "the restart got the same losses and learning rates as the first run" in output
    first, again = output.split("restarted from the checkpoint:")
    line = r"^  step +(\d+) +loss \S+ +lr (\S+)$"
    first = [(int(s), float(lr)) for s, lr in re.findall(line, first, re.M)]
    again = [(int(s), float(lr)) for s, lr in re.findall(line, again, re.M)]
    assert [s for s, _ in first] == list(range(16)) and [s for s, _ in again] == list(range(6, 16))
    assert again == first[6:]
    assert len({lr for _, lr in again}) > 1, "the lr never changed: the test shows nothing"
    job = client.get_job(job_id)
    assert job["rewinds"] == 1 and job["last_step"] == 15
    # The history is the restart's: each answer is the lr of the next step it printed.
    history = client.history(job_id)
    assert [p["lr"] for p in history[6:15]] == [lr for _, lr in again[1:]]



def test_nmf_with_a_stability_cap_trains_where_the_same_start_without_diverges(daemon, client,
                                                                                job_id):
    def final_loss(*extra):
        output = run([sys.executable, example("nmf_cap.py"), "--url", daemon.url,
                      "--job", job_id + "".join(extra), "--epochs", "6", *extra])
        return float(re.search(r"^loss \S+ -> (\S+)$", output, re.M).group(1)), output

    capped, output = final_loss()
    uncapped, _ = final_loss("--no-cap")
    assert capped < uncapped / 10, output
    history = client.history(job_id)
    assert all(p["lr"] <= p["lr_cap"] for p in history), "an answer above its report's cap"
    assert "capped" in {p["event"] for p in history}
