"""Where 'successful' models still fail: error against test length from the record, and probes of saved models
(carry chains, the talk's similar-stretch inputs such as 0000...0002 x 0000...0001, structured against random
inputs).

Checkpoints are the trainer's `state.pt` (neuralgpu/train.py Trainer.save), attached to each sweep trial's MLflow
run as the artifact checkpoint/state.pt. Probe inputs are built with neuralgpu.tasks, so they use exactly the
trainer's encoding.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.continuous import iqm, stratified_bootstrap
from analysis.outcomes import grouped, rules_named
from neuralgpu.config import TrainConfig
from neuralgpu.evaluate import count_errors
from neuralgpu.model import build_model
from neuralgpu.tasks import decode_answer, encode, encode_operands, format_example, get_task, operand_digits
from neuralgpu.train import model_config

CHECKPOINT_ARTIFACT = "checkpoint/state.pt"


# --- error against test length, from the record -------------------------------------------------------------
def error_by_length(trials: pd.DataFrame, metric: str = "seq_error", keep: list[str] | None = None) -> pd.DataFrame:
    """Long form of the final test errors: one row per run and test length L with a logged eval/<metric>@L.
    Columns: run_id, keep..., outcome, length, value. Runs without a value at L (diverged: no final test)
    have NaN there, so they are counted and never silently missing."""
    pattern = re.compile(rf"^eval/{metric}@(\d+)$")
    lengths = {int(m.group(1)): c for c in trials.columns if (m := pattern.match(c))}
    keep = list(dict.fromkeys(["run_id", *(keep or []), "outcome"]))
    parts = []
    for length, column in sorted(lengths.items()):
        part = trials[keep].copy()
        part["length"] = length
        part["value"] = trials[column].astype(float)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keep, "length", "value"])


def error_length_table(
    trials: pd.DataFrame,
    by: list[str],
    rng: np.random.Generator,
    metric: str = "seq_error",
    reps: int = 1000,
) -> pd.DataFrame:
    """Per group and test length: runs, runs with a value, median, IQM with its stratified-bootstrap 95% interval.
    Note: the value is each run's last evaluation at that length (for a run stopped at success, at its success)."""
    long = error_by_length(trials, metric, keep=by)
    rows = []
    for key, group in grouped(long, [*by, "length"]):
        values = group["value"].dropna().to_numpy()
        point, low, high = stratified_bootstrap(values, iqm, rng, reps) if len(values) else (math.nan,) * 3
        rows.append(
            {
                **key,
                "n_runs": len(group),
                "n_with_value": len(values),
                "median": float(np.median(values)) if len(values) else math.nan,
                "iqm": point,
                "low": low,
                "high": high,
                "metric": metric,
            }
        )
    table = pd.DataFrame(rows)
    table["rule"] = rules_named(trials)
    return table


# --- saved models ------------------------------------------------------------------------------------------
def load_model(path: str | Path, device: str = "cpu") -> tuple[TrainConfig, torch.nn.Module]:
    """(config, model in eval mode) from a trainer checkpoint (a state.pt file or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint; pass a state.pt written by neuralgpu.train (or its folder)")
    state = torch.load(path, map_location=device, weights_only=True)
    cfg = TrainConfig.from_dict(state["config"], source=str(path))
    model = build_model(cfg.model, model_config(cfg)).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return cfg, model


def download_checkpoint(run_id: str, destination: str | Path, tracking_uri: str | None = None) -> Path | None:
    """Fetch a run's checkpoint/state.pt artifact into destination/<run_id>/; None when the run has none."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in the report
    target = Path(destination) / run_id
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT, dst_path=str(target), tracking_uri=tracking_uri
        )
    except Exception:  # noqa: BLE001  (MLflow raises several types for a missing artifact)
        return None
    return Path(local)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, chunk: int = 16) -> np.ndarray:
    """The model's symbols (B, n) for inputs (B, n); targets (B, n) only set the output mask (which columns
    the answer may occupy), as in the trainer's evaluation."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(inputs), chunk):
        x = torch.from_numpy(inputs[start : start + chunk]).to(device)
        y = torch.from_numpy(targets[start : start + chunk]).to(device)
        logits, _ = model(x, y)
        out.append(logits.argmax(dim=-1).cpu().numpy())
    return np.concatenate(out)


def _errors(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    predictions = predict(model, inputs, targets)
    wrong_seqs, wrong_digits, digits = count_errors(torch.from_numpy(predictions), torch.from_numpy(targets))
    return wrong_seqs / len(inputs), wrong_digits / max(digits, 1)


def carry_chain_inputs(
    task: str, chain: int, length: int, examples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two-operand additions (B = examples, each (length,)) whose carry runs through exactly `chain` digits.

    Operand a has base-1 in digits 0..chain-1, operand b has 1 in digit 0 and 0 in digits 1..chain-1, so the
    carry from digit 0 ripples to digit `chain`; digit `chain` sums to at most base-2 (the ripple stops there)
    and higher digits are random. Example (badd, chain 3): ...0111 + ...0001 = ...1000.
    """
    spec = get_task(task)
    if spec.kind != "add" or spec.arity != 2:
        raise ValueError(f"carry chains are probed on two-operand addition tasks, not {task!r}")
    k = operand_digits(spec, length)
    if not 1 <= chain < k:
        raise ValueError(f"chain {chain} does not fit length {length} ({k} digits per operand); use chain < {k}")
    base = spec.base
    a = rng.integers(0, base, size=(examples, k))
    b = rng.integers(0, base, size=(examples, k))
    a[:, :chain], b[:, :chain] = base - 1, 0
    b[:, 0] = 1
    a[:, chain] = rng.integers(0, base - 1, size=examples)  # a_c + b_c <= base - 2
    b[:, chain] = rng.integers(0, base - 1 - a[:, chain])
    return encode_operands(spec, [a, b], length)


def carry_chain_table(
    model: torch.nn.Module, task: str, length: int, chains: list[int], examples: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Sequence and digit error against carry-chain length at one test length (chains that fit), beside the
    error on uniformly random inputs of the same length (chain = 0 row, kind 'random')."""
    from neuralgpu.tasks import random_batch

    rows = []
    seq, digit = _errors(model, *random_batch(task, length, examples, rng))
    rows.append(
        {"kind": "random", "chain": 0, "length": length, "examples": examples, "seq_error": seq, "digit_error": digit}
    )
    k = operand_digits(task, length)
    for chain in chains:
        if chain >= k:
            continue
        seq, digit = _errors(model, *carry_chain_inputs(task, chain, length, examples, rng))
        rows.append(
            {
                "kind": "carry chain",
                "chain": chain,
                "length": length,
                "examples": examples,
                "seq_error": seq,
                "digit_error": digit,
            }
        )
    return pd.DataFrame(rows)


def similar_stretch_operands(task: str, length: int) -> dict[str, list[int]]:
    """The talk's inputs made of long equal stretches, for an arithmetic task at a test length: name -> operands.

    '0...02 op 0...01' (2 and 1 padded with zeros; '0...01 op 0...01' in binary), '0...0 op 0...0', '1...1 op
    0...01' (all ones), 'max...max op 0...01' (the longest carry for addition) and '10...0 op 0...01'."""
    spec = get_task(task)
    if not spec.is_arithmetic:
        raise ValueError(f"similar-stretch probes are for arithmetic tasks, not {task!r}")
    k = operand_digits(spec, length)
    base = spec.base
    ones = sum(base**i for i in range(k))  # the digit 1 repeated k times
    small = min(2, base - 1)  # 2, or 1 in binary
    probes = {
        f"0...0{small} op 0...01": [small, 1],
        "0...0 op 0...0": [0, 0],
        "1...1 op 0...01": [ones, 1],
        "max...max op 0...01": [base**k - 1, 1],
        "10...0 op 0...01": [base ** (k - 1), 1],
    }
    if base == 2:
        del probes["1...1 op 0...01"]  # the same input as max...max in binary
    return {name: operands + [0] * (spec.arity - 2) for name, operands in probes.items()}


def similar_stretch_table(model: torch.nn.Module, task: str, lengths: list[int]) -> pd.DataFrame:
    """One row per probe and length: the input, the expected answer and the model's output as text
    (format_example: numbers most significant digit first, padding shown), and whether the model is right."""
    rows = []
    for length in lengths:
        for name, operands in similar_stretch_operands(task, length).items():
            inputs, targets = encode(task, operands, length)
            output = predict(model, inputs[None, :], targets[None, :])[0]
            line = format_example(task, inputs, output)
            problem, _, model_part = line.partition("   model: ")
            question, _, expected = problem.rpartition(" = ")
            answer = decode_answer(task, output)
            rows.append(
                {
                    "length": length,
                    "probe": name,
                    "input": question,
                    "expected": expected,
                    "model": model_part.rsplit(" (", 1)[0],
                    "right": answer is not None and answer == decode_answer(task, targets),
                }
            )
    return pd.DataFrame(rows)


def structured_inputs(task: str, kind: str, length: int, examples: int, rng: np.random.Generator):
    """(inputs, targets) (examples, length) of a structured family: 'zeros' (operands with long zero runs: a
    few random digits at the bottom), 'max' (long runs of the largest digit) or 'repeated' (one digit repeated)."""
    spec = get_task(task)
    k = operand_digits(spec, length)
    base = spec.base
    arity = spec.arity if spec.is_arithmetic else 1
    operands = []
    for _ in range(arity):
        digits = rng.integers(0, base, size=(examples, k))
        few = max(1, k // 10)
        if kind == "zeros":
            digits[:, few:] = 0
        elif kind == "max":
            digits[:, few:] = base - 1
        elif kind == "repeated":
            digits[:] = rng.integers(0, base, size=(examples, 1))
        else:
            raise ValueError(f"structured kind is {kind!r}; use zeros, max or repeated")
        operands.append(digits)
    return encode_operands(spec, operands, length)


def structured_vs_random(
    model: torch.nn.Module, task: str, length: int, examples: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Sequence and digit error on random inputs against structured families (structured_inputs) at one length."""
    from neuralgpu.tasks import random_batch

    rows = []
    for kind in ("random", "zeros", "max", "repeated"):
        if kind == "random":
            inputs, targets = random_batch(task, length, examples, rng)
        else:
            inputs, targets = structured_inputs(task, kind, length, examples, rng)
        seq, digit = _errors(model, inputs, targets)
        rows.append({"kind": kind, "length": length, "examples": examples, "seq_error": seq, "digit_error": digit})
    return pd.DataFrame(rows)


def probe_runs(
    trials: pd.DataFrame,
    destination: str | Path,
    lengths: list[int],
    rng: np.random.Generator,
    max_runs: int = 4,
    chains: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    examples: int = 32,
    tracking_uri: str | None = None,
    threads: int = 1,
) -> dict[str, pd.DataFrame]:
    """Probe the saved models of up to `max_runs` runs, successful runs first (then the shortest):
    {'runs': which runs were probed, 'carries', 'stretches', 'structured'} with run_id, outcome, width and seed
    in every row. Runs without a checkpoint artifact are listed in 'runs' with probed=False.

    threads: torch CPU threads for the probes (sets torch.set_num_threads). Small models run fastest on one
    thread; on a busy 2-core machine the default of all cores was 13x slower."""
    torch.set_num_threads(threads)
    uri = tracking_uri or trials.attrs.get("tracking_uri")
    order = trials.assign(_success=trials["outcome"] == "success").sort_values(
        ["_success", "steps"], ascending=[False, True]
    )
    picked, carries, stretches, structured = [], [], [], []
    for row in order.head(max_runs).itertuples(index=False):
        path = download_checkpoint(row.run_id, destination, uri)
        picked.append({"run_id": row.run_id, "outcome": row.outcome, "probed": path is not None})
        if path is None:
            continue
        cfg, model = load_model(path)
        tag = {"run_id": row.run_id, "outcome": row.outcome, "width": cfg.width, "seed": cfg.seed}
        for length in lengths:
            if get_task(cfg.task).kind == "add" and get_task(cfg.task).arity == 2:
                carries.append(carry_chain_table(model, cfg.task, length, list(chains), examples, rng).assign(**tag))
            structured.append(structured_vs_random(model, cfg.task, length, examples, rng).assign(**tag))
        if get_task(cfg.task).is_arithmetic:
            stretches.append(similar_stretch_table(model, cfg.task, lengths).assign(**tag))

    def concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    return {
        "runs": pd.DataFrame(picked),
        "carries": concat(carries),
        "stretches": concat(stretches),
        "structured": concat(structured),
    }


def logged_lengths(trials: pd.DataFrame, metric: str = "seq_error") -> list[int]:
    """Test lengths L with a final eval/<metric>@L in the trials frame, ascending."""
    pattern = re.compile(rf"^eval/{metric}@(\d+)$")
    return sorted(int(m.group(1)) for c in trials.columns if (m := pattern.match(c)))
