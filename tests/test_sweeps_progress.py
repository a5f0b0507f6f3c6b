"""The live progress line: counts, and the running trials' steps and best error, refreshed while trials run."""

from __future__ import annotations

import io

from sweeps import session
from sweeps.expand import load_sweep
from sweeps.session import Progress, Running, short_labels


class Log(io.StringIO):
    def isatty(self) -> bool:  # a log file, not a terminal
        return False


def progress(**changes) -> Progress:
    values = dict(sweep_name="pool", pool_size=8, done_before=0, successes_before=0, pending=8, stream=Log())
    return Progress(**{**values, **changes})


def test_labels_name_the_varying_axes_and_the_seed(make_sweep):
    sweep = load_sweep(str(make_sweep()), ["~base.task", "axes.science.task=[badd, bmul]"])
    labels = short_labels(sweep.trials)
    assert sorted(labels.values()) == sorted(f"{w}-{t}-s{s}" for w in (4, 6) for t in ("badd", "bmul") for s in (0, 1))
    only_seeds = load_sweep(str(make_sweep()), ["axes.science.width=[4]"])
    assert sorted(short_labels(only_seeds.trials).values()) == ["s0", "s1"]


def test_a_running_trial_shows_its_best_error_from_the_success_test_once_it_ran():
    entry = Running("24-s3")
    assert entry.describe(5000) == "24-s3 0/5000", "no error before the first report"
    entry.update({"step": 100, "train/seq_error": 0.9}, "eval/seq_error@201")
    entry.update({"step": 200, "train/seq_error": 0.7}, "eval/seq_error@201")
    entry.update({"step": 300, "train/seq_error": 0.8}, "eval/seq_error@201")
    assert entry.describe(5000) == "24-s3 300/5000 err 0.70", "the best training error so far"
    entry.update({"step": 400, "train/seq_error": 0.1, "eval/seq_error@201": 0.52}, "eval/seq_error@201")
    entry.update({"step": 500, "train/seq_error": 0.05, "eval/seq_error@201": 0.61}, "eval/seq_error@201")
    assert entry.describe(5000) == "24-s3 500/5000 err@201 0.52", "once tested, the best test error"
    assert entry.describe(None) == "24-s3 500 err@201 0.52", "a minutes budget has no step total"


def test_the_line_names_a_few_running_trials_and_counts_the_rest():
    keys = [f"k{i}" for i in range(6)]
    line = progress(labels={k: f"w{i}-s0" for i, k in enumerate(keys)}, budget=1000, test_metric="eval/seq_error@11")
    for i, key in enumerate(keys):
        line.start(key)
        line.report(key, {"step": 100 * (i + 1), "train/seq_error": 0.5})
    line.report("k9", {"step": 10})  # not running (finished, or another sweep's): ignored
    text = line.line()
    assert text.startswith("[pool] 0/8 done, 6 running, 2 pending | successes 0/0 |")
    shown = text.split(" | running: ")[1]
    assert shown == "w0-s0 100/1000 err 0.50, w1-s0 200/1000 err 0.50, w2-s0 300/1000 err 0.50, " + (
        "w3-s0 400/1000 err 0.50, +2 more"
    )
    line.finish("k0", success=False)
    assert "w0-s0" not in line.line() and "5 running" in line.line()


def test_a_long_pool_prints_a_line_every_half_minute_even_when_nothing_finishes(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(session.time, "monotonic", lambda: clock[0])
    line = progress(labels={"k0": "s0"}, budget=1000, started=clock[0])
    line.start("k0")
    assert line.stream.getvalue().count("\n") == 1, "a trial starting changes the counts: one line"
    for second in range(1, 100):
        clock[0] += 1
        line.report("k0", {"step": 10 * second, "train/seq_error": 1 - second / 100})
        line.show()  # what the Tune callback does after every step of its loop
    printed = line.stream.getvalue().splitlines()
    assert len(printed) == 1 + 99 // session.REFRESH_LOG_S, "a report alone prints nothing; the refresh does"
    assert printed[-1].endswith("elapsed 1m30s | ETA -- | running: s0 900/1000 err 0.10")
    assert session.REFRESH_LOG_S <= 30
