"""Adaptive pools: which seeds to run, decided by looks at the finished trials (schema `adaptive:`).

Planning is pure (`replay`): from the record of finished trials (trial key -> success) it re-does every look from
the first, in order: run `min_seeds` seeds per cell; look when every chosen trial has finished; add `batch` seeds
to each cell with an undecided question; again, until every question is decided or the cell has every seed of the
seed axis. The looks are a function of the record alone, so a killed or resumed pool re-does them identically and
continues at the first look whose trials have not all finished. The statistics are analysis/sequential.py's
(anytime-valid, so looking after every batch keeps each question's level).

`run_adaptive` executes it: one parent run per invocation, one execution (Tune experiment) per look, the look
printed as lines and recorded on the parent run (`adaptive/looks.json`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from analysis.sequential import confidence_sequence, difference_interval, log_evalue_path
from seedcore.record import LOOKS_ARTIFACT
from sweeps.expand import Sweep, Trial
from sweeps.schema import Adaptive


@dataclass(frozen=True)
class Item:
    """One decision of one question: a cell's half-width, or one pair of cells to compare."""

    question: int
    """Index in adaptive.questions."""
    cells: tuple[str, ...]
    """Cell labels: one for a half-width, (a, b) for a comparison."""
    halfwidth: float | None = None


@dataclass(frozen=True)
class Look:
    number: int
    """1 for the look after min_seeds."""
    cells: dict[str, dict[str, Any]]
    """label -> {seeds, trials, successes, rate, low, high}: the counts and the cell's interval at alpha."""
    decisions: list[dict[str, Any]]
    """One per Item: {question, cells, decided, why, ...the numbers it was decided on}."""
    added: dict[str, int]
    """Seeds added to each cell after this look (empty at the last look)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AdaptiveState:
    looks: list[Look]
    """Every look the record supports, in order."""
    pool: list[Trial]
    """The trials chosen so far, in expansion order: run or to run."""
    done: bool
    """Every question is decided or its cells have every seed: nothing more will be added."""


def cells_of(sweep: Sweep) -> dict[str, list[Trial]]:
    """Cell label -> its trials in expansion order (seed-major)."""
    cells: dict[str, list[Trial]] = {}
    for trial in sweep.trials:
        cells.setdefault(trial.cell_label, []).append(trial)
    return cells


def items_of(sweep: Sweep, adaptive: Adaptive) -> list[Item]:
    """The questions as decisions over cells: a half-width per cell it picks, a comparison per pair of cells that
    differ in the compared field only."""
    fields = sweep.science_axes
    cells = {label: {f: trials[0].axis_values[f] for f in fields} for label, trials in cells_of(sweep).items()}
    items = []
    for number, question in enumerate(adaptive.questions):
        if question.halfwidth is not None:
            for label, values in cells.items():
                if all(values.get(k) == v for k, v in question.where.items()):
                    items.append(Item(number, (label,), question.halfwidth))
            continue
        ((field, (first, second)),) = question.compare.items()
        for label, values in cells.items():
            if values[field] != first:
                continue
            partner = {**values, field: second}
            other = next((lab for lab, vals in cells.items() if vals == partner), None)
            if other is not None:
                items.append(Item(number, (label, other)))
    return items


def replay(sweep: Sweep, outcomes: Mapping[str, bool]) -> AdaptiveState:
    """Re-do the looks from the record `outcomes` (trial key -> success, finished trials only)."""
    adaptive = sweep.config.adaptive
    assert adaptive is not None
    seeds = sweep.config.axes.nuisance["seed"]
    position = {seed: i for i, seed in enumerate(seeds)}
    cells = cells_of(sweep)
    items = items_of(sweep, adaptive)
    alpha = level(adaptive, items)
    size = {label: min(adaptive.min_seeds, len(seeds)) for label in cells}
    looks: list[Look] = []
    while True:
        chosen = {label: [t for t in trials if position[t.seed] < size[label]] for label, trials in cells.items()}
        pool = sorted((t for trials in chosen.values() for t in trials), key=lambda t: t.index)
        if any(t.key not in outcomes for t in pool):
            return AdaptiveState(looks, pool, done=False)
        results = {label: [outcomes[t.key] for t in trials] for label, trials in chosen.items()}
        decisions = [decide(item, results, alpha) for item in items]
        growing = {
            label
            for item, decision in zip(items, decisions, strict=True)
            if not decision["decided"]
            for label in item.cells
            if size[label] < len(seeds)
        }
        added = {label: min(adaptive.batch, len(seeds) - size[label]) for label in cells if label in growing}
        looks.append(Look(len(looks) + 1, cell_counts(results, size, alpha), decisions, added))
        if not added:
            return AdaptiveState(looks, pool, done=True)
        for label, more in added.items():
            size[label] += more


def level(adaptive: Adaptive, items: list[Item]) -> float:
    """The level each decision (and each cell's interval) is taken at."""
    return adaptive.alpha / max(len(items), 1) if adaptive.familywise else adaptive.alpha


def summary_interval(sweep: Sweep) -> tuple[Callable[[int, int], tuple[float, float]], str]:
    """The interval the end-of-pool table shows for an adaptive pool, with its header name: each cell's
    confidence sequence at the looks' level (a fixed-n interval would not hold after repeated looks)."""
    assert sweep.config.adaptive is not None
    alpha = level(sweep.config.adaptive, items_of(sweep, sweep.config.adaptive))

    def interval(successes: int, trials: int) -> tuple[float, float]:
        low, high = confidence_sequence(successes, trials, alpha)
        return float(low), float(high)

    return interval, f"{100 * (1 - alpha):.3g}% anytime"


def cell_counts(results: dict[str, list[bool]], size: dict[str, int], alpha: float) -> dict[str, dict[str, Any]]:
    out = {}
    for label, outcomes in results.items():
        successes, trials = sum(outcomes), len(outcomes)
        low, high = confidence_sequence(successes, trials, alpha)
        out[label] = {
            "seeds": size[label],
            "trials": trials,
            "successes": successes,
            "rate": successes / trials if trials else math.nan,
            "low": round(float(low), 6),
            "high": round(float(high), 6),
        }
    return out


def decide(item: Item, results: dict[str, list[bool]], alpha: float) -> dict[str, Any]:
    """One decision at one look, with the numbers it rests on and a short reason."""
    if item.halfwidth is not None:
        (label,) = item.cells
        outcomes = results[label]
        low, high = confidence_sequence(sum(outcomes), len(outcomes), alpha)
        half = float(high - low) / 2
        decided = half <= item.halfwidth
        sign = "<=" if decided else ">"
        return {
            "question": item.question,
            "cells": [label],
            "halfwidth": round(half, 6),
            "decided": decided,
            "why": f"{label}: interval half-width {half:.3f} {sign} {item.halfwidth:g}",
        }
    a, b = item.cells
    pairs = min(len(results[a]), len(results[b]))  # seed i of a with seed i of b (sequential.log_evalue_path)
    path = log_evalue_path(results[a][:pairs], results[b][:pairs])
    log_evalue = float(path[-1]) if pairs else 0.0
    decided = log_evalue >= math.log(1 / alpha)
    low, high = difference_interval(sum(results[a]), len(results[a]), sum(results[b]), len(results[b]), alpha)
    evalue, bound = math.exp(log_evalue), 1 / alpha
    return {
        "question": item.question,
        "cells": [a, b],
        "evalue": round(evalue, 6),
        "difference_low": round(float(low), 6),
        "difference_high": round(float(high), 6),
        "decided": decided,
        "why": f"{a} vs {b}: "
        + (
            f"different (e-value {evalue:.3g} >= {bound:g})"
            if decided
            else f"not decided (e-value {evalue:.3g} < {bound:g})"
        ),
    }


def look_lines(sweep_name: str, look: Look, replayed: bool) -> list[str]:
    """A look as printed: a header line, one line per decision, and what is added."""
    counts = ", ".join(
        f"{label} {c['successes']}/{c['trials']} [{c['low']:.2f}, {c['high']:.2f}]" for label, c in look.cells.items()
    )
    source = " (from the record)" if replayed else ""
    lines = [f"[{sweep_name}] look {look.number}{source}: {counts}"]
    lines += [f"    {'decided' if d['decided'] else 'open   '}  {d['why']}" for d in look.decisions]
    if look.added:
        added = ", ".join(f"{label} +{n}" for label, n in look.added.items())
        lines.append(f"    adding seeds where a question is open: {added}")
    else:
        open_items = sum(not d["decided"] for d in look.decisions)
        lines.append(
            "    every question decided"
            if not open_items
            else f"    {open_items} question(s) open at the seed axis's end"
        )
    return lines


# --- execution ---------------------------------------------------------------------------------------------------
def run_adaptive(sweep: Sweep, executor: Any, restart: bool, stream: TextIO, argv: list[str] | None) -> int:
    """`sweeps run` for a pool with `adaptive:`: replay the looks from the record, then run each look's new trials
    and look again, until done. Returns the exit status (sweeps.runner's codes)."""
    from sweeps.plan import RunRecord, plan_run
    from sweeps.runner import (
        EXIT_INTERRUPTED,
        EXIT_OK,
        Invocation,
        command_line,
        conclude,
        connected,
        ending,
        latest_tune_experiment,
        pool_progress,
        report_hint,
        run_records,
        sigterm_as_interrupt,
        summary_of,
    )
    from sweeps.session import Session
    from sweeps.tracking import SweepRecorder

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    with connected(sweep, executor, say) as (parallel, store):
        runs = store.trial_runs()
        if restart and runs:
            for run in runs.values():
                store.client.delete_run(run.info.run_id)
            say(f"--restart: {len(runs)} earlier trial runs of this pool moved to MLflow's deleted runs.")
            runs = {}
        records = run_records(runs)
        outcomes = {key: r.success for key, r in records.items() if r.status == "FINISHED"}
        state = replay(sweep, outcomes)
        for look in state.looks:
            for line in look_lines(sweep.name, look, replayed=True):
                say(line)
        subset = dataclasses.replace(sweep, trials=state.pool)
        say(
            f"[{sweep.name}] adaptive pool: {len(state.looks)} look(s) in the record, "
            f"{sum(t.key in outcomes for t in state.pool)} trials finished"
            + ("; every question is settled, nothing to run" if state.done else "")
            + f"; recording to {store.uri}"
        )
        if state.done:
            say(summary_of(subset, runs)[2])
            say(report_hint(sweep, store.uri))
            return EXIT_OK
        previous = None if restart else latest_tune_experiment(store)
        recorder = SweepRecorder(store, sweep, runs, say=say)
        recorder.start_parent(command_line(sweep, argv), sum(t.key not in outcomes for t in state.pool), tune_path="")
        record_looks(recorder, state.looks)
        session = Session(recorder, None, {t.key: t for t in sweep.trials}, frozenset(outcomes))
        started = time.monotonic()
        status, code = "KILLED", EXIT_INTERRUPTED
        try:
            with sigterm_as_interrupt():
                while not state.done:
                    launched = executor.launched_keys(previous) if previous else ()
                    plan = plan_run(state.pool, records, False, launched)
                    session.progress = pool_progress(dataclasses.replace(sweep, trials=state.pool), plan, stream)
                    if plan.restore and previous:
                        executor.restore(previous, plan.restore, session)
                    remaining = plan.fresh_after(session.completed | session.errored)
                    if remaining and not session.interrupted:
                        executor.fresh(remaining, session)
                    previous = None  # later looks launch only fresh trials
                    if session.interrupted or session.errored:
                        break
                    outcomes.update(recorder.outcomes)
                    records = {**records, **{k: RunRecord("FINISHED", s) for k, s in recorder.outcomes.items()}}
                    seen = len(state.looks)
                    state = replay(sweep, outcomes)
                    for look in state.looks[seen:]:
                        for line in look_lines(sweep.name, look, replayed=False):
                            say(line)
                    record_looks(recorder, state.looks)
                status, code = ending(session)
        except KeyboardInterrupt:
            status, code = "KILLED", EXIT_INTERRUPTED
        finally:
            recorder.close_open("KILLED")
            subset = dataclasses.replace(sweep, trials=state.pool)
            invocation = Invocation(subset, plan_run(state.pool, records, False, ()), store, runs, None, parallel)
            code = conclude(invocation, recorder, session, status, code, time.monotonic() - started, say)
        return code


def record_looks(recorder: Any, looks: list[Look]) -> None:
    """The looks so far on the parent run, as `adaptive/looks.json` (rewritten at each look): every look's
    counts, intervals, decisions with their numbers and reasons, and the seeds it added. An artifact rather than
    metrics, so the record's vocabulary (seedcore.record) is unchanged."""
    run_id = recorder.parent_run_id
    if run_id is not None and looks:
        recorder.client.log_text(run_id, json.dumps([look.as_dict() for look in looks], indent=2), LOOKS_ARTIFACT)
