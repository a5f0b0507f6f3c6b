"""Success rates over seeds: intervals, comparisons of configurations, logistic regression on the axes.

Every interval here is correct at 0/N and N/N (Wilson and Clopper-Pearson never collapse to zero width there,
unlike a percentile bootstrap or a Wald interval). The well-kept implementations are used: statsmodels'
proportion_confint, confint_proportions_2indep, multipletests and Logit, scipy's fisher_exact.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from analysis.outcomes import UNPLACED, grouped, outcome_counts, rules_named
from seedcore.record import CONFIDENCE


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for successes/n; (nan, nan) when n == 0. At 0/n the lower bound is exactly 0."""
    return _interval(successes, n, confidence, "wilson")


def exact_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson ('exact', beta quantiles) interval; conservative: covers at least `confidence`."""
    return _interval(successes, n, confidence, "beta")


def _interval(successes: int, n: int, confidence: float, method: str) -> tuple[float, float]:
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method=method)
    # Wilson's formula leaves rounding errors at the edges (2.8e-17 at 0/12): both intervals end exactly at 0 at
    # 0/n and at 1 at n/n.
    low = 0.0 if successes == 0 else min(max(float(low), 0.0), 1.0)
    high = 1.0 if successes == n else min(max(float(high), 0.0), 1.0)
    return low, high


def success_counts(trials: pd.DataFrame, censored: str = "failure") -> tuple[int, int]:
    """(successes, n) of a group. censored='failure' counts every non-success in n (the default, conservative);
    censored='exclude' leaves censored runs out of n (they still appear in every table's n_censored)."""
    if censored not in ("failure", "exclude"):
        raise ValueError(f"censored is {censored!r}; use 'failure' or 'exclude'")
    successes = int((trials["outcome"] == "success").sum())
    n = len(trials) - (int((trials["outcome"] == "censored").sum()) if censored == "exclude" else 0)
    return successes, n


def rate_table(
    trials: pd.DataFrame, by: list[str], confidence: float = CONFIDENCE, censored: str = "failure"
) -> pd.DataFrame:
    """One row per group: counts of every outcome, successes/n, rate, Wilson and exact intervals, and the rule.

    trials: one row per run with `outcome` and `rule` (load_trials or rejudge); by: grouping columns (e.g.
    ["curriculum", "width"]). Columns: by..., n_runs, n_success, n_failed, n_diverged, n_crashed, n_censored,
    successes, n, rate, wilson_low, wilson_high, exact_low, exact_high, rule.
    """
    rows = []
    for key, group in grouped(trials, by):
        successes, n = success_counts(group, censored)
        wilson = wilson_interval(successes, n, confidence)
        exact = exact_interval(successes, n, confidence)
        rows.append(
            {
                **key,
                **outcome_counts(group),
                "successes": successes,
                "n": n,
                "rate": successes / n if n else math.nan,
                "wilson_low": wilson[0],
                "wilson_high": wilson[1],
                "exact_low": exact[0],
                "exact_high": exact[1],
                "rule": rules_named(group),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Difference:
    """Rate A minus rate B with Newcombe's hybrid-score interval and Fisher's exact two-sided p-value."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    difference: float
    low: float
    high: float
    p_value: float
    odds_ratio: float


def compare_two(successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = CONFIDENCE) -> Difference:
    """Newcombe (1998, method 10) interval for p_a - p_b and Fisher's exact test on the 2x2 table.

    Hand example (Newcombe 1998, Table II (a)): 56/70 vs 48/80 gives 0.2333 in [0.0524, 0.3339].
    """
    for s, n in ((successes_a, n_a), (successes_b, n_b)):
        if n < 1 or not 0 <= s <= n:
            raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {s}/{n}")
    low, high = confint_proportions_2indep(
        successes_a, n_a, successes_b, n_b, method="newcomb", compare="diff", alpha=1 - confidence
    )
    table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
    odds_ratio, p_value = fisher_exact(table, alternative="two-sided")
    return Difference(
        successes_a,
        n_a,
        successes_b,
        n_b,
        successes_a / n_a - successes_b / n_b,
        float(low),
        float(high),
        float(p_value),
        float(odds_ratio),
    )


def holm(p_values: list[float] | np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm step-down adjusted p-values (n_tests,) and the reject flags (n_tests,) at family-wise level alpha.

    Hand example: p = [0.01, 0.04, 0.03] gives adjusted [0.03, 0.06, 0.06].
    """
    p_values = np.asarray(p_values, dtype=float)
    if p_values.size == 0:
        return p_values, np.zeros(0, dtype=bool)
    reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    return adjusted, reject


def pairwise_table(
    trials: pd.DataFrame,
    by: list[str],
    pairs: list[tuple[tuple, tuple]] | None = None,
    confidence: float = CONFIDENCE,
    censored: str = "failure",
) -> pd.DataFrame:
    """Every pair of groups (or the given `pairs` of group keys): difference of rates with Newcombe's interval,
    Fisher's p-value and Holm's adjustment over all pairs in the table.

    Columns: a, b (group labels), successes_a, n_a, successes_b, n_b, difference, low, high, p_value, p_holm,
    reject_holm, rule. The counts of every outcome per group are in rate_table(trials, by). Runs unplaced in a
    `by` column (outcomes.UNPLACED) are in no group compared.
    """
    groups = {tuple(key.values()): group for key, group in grouped(trials, by) if UNPLACED not in key.values()}
    if pairs is None:
        pairs = list(itertools.combinations(groups, 2))
    rows = []
    for a, b in pairs:
        a, b = tuple(a) if isinstance(a, tuple | list) else (a,), tuple(b) if isinstance(b, tuple | list) else (b,)
        for key in (a, b):
            if key not in groups:
                raise ValueError(f"no group {key} in the table grouped by {by}; groups are {list(groups)}")
        diff = compare_two(
            *success_counts(groups[a], censored), *success_counts(groups[b], censored), confidence=confidence
        )
        rows.append(
            {
                "a": _label(by, a),
                "b": _label(by, b),
                "successes_a": diff.successes_a,
                "n_a": diff.n_a,
                "successes_b": diff.successes_b,
                "n_b": diff.n_b,
                "difference": diff.difference,
                "low": diff.low,
                "high": diff.high,
                "p_value": diff.p_value,
            }
        )
    columns = ["a", "b", "successes_a", "n_a", "successes_b", "n_b", "difference", "low", "high", "p_value"]
    table = pd.DataFrame(rows, columns=columns)
    table["p_holm"], table["reject_holm"] = holm(table["p_value"].to_numpy())
    table["rule"] = rules_named(trials)
    return table


def _label(by: list[str], key: tuple) -> str:
    return " ".join(f"{name}={value}" for name, value in zip(by, key, strict=True)) or "all"


@dataclass
class LogitFit:
    """Logistic regression of success on the axes. `table` holds one row per term: coef, std_err, p_value,
    odds_ratio with its interval; `note` says why estimates are missing (e.g. perfect separation)."""

    formula: str
    n: int
    successes: int
    table: pd.DataFrame
    note: str = ""
    converged: bool = True
    warnings: list[str] = field(default_factory=list)


def logistic_regression(trials: pd.DataFrame, formula: str, censored: str = "failure") -> LogitFit:
    """Fit `success ~ terms` (statsmodels formula over the trials' columns, e.g.
    "success ~ np.log2(width) + C(curriculum)") with statsmodels Logit.

    Perfect or quasi-perfect separation (a term predicts success exactly: common with few seeds, e.g. every wide
    model succeeds and every narrow one fails) has no finite maximum-likelihood estimate: the fit returns NaN
    estimates and a note saying so, instead of huge meaningless coefficients or a traceback. Read the rate table
    for such data. Also NaN with a note when every run succeeded or every run failed.
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    data = trials.copy()
    if censored == "exclude":
        data = data[data["outcome"] != "censored"]
    data["success"] = (data["outcome"] == "success").astype(float)
    n, successes = len(data), int(data["success"].sum())
    terms = formula.split("~", 1)[1].strip() if "~" in formula else formula
    formula = f"success ~ {terms}"

    def empty(note: str) -> LogitFit:
        table = pd.DataFrame(columns=["term", "coef", "std_err", "p_value", "odds_ratio", "or_low", "or_high"])
        return LogitFit(formula, n, successes, table, note=note, converged=False)

    if successes in (0, n):
        return empty(f"all {n} runs {'failed' if successes == 0 else 'succeeded'}: no logistic fit is possible")
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            model = smf.logit(formula, data=data)
            result = model.fit(disp=0, maxiter=200)
        caught = [str(w.message) for w in seen]
        separated = any(issubclass(w.category, PerfectSeparationWarning) for w in seen)
    except PerfectSeparationError:
        separated = True
    except np.linalg.LinAlgError as exc:
        return empty(f"singular design ({exc}): an axis has a single value or two terms are collinear")
    if separated or not np.all(np.isfinite(result.bse)) or np.any(np.abs(result.params) > 15):
        return empty(
            "perfect separation: some term predicts success exactly in these runs, so the odds ratios are "
            "infinite (no finite maximum-likelihood estimate). Compare the groups' rates and intervals instead, "
            "or add seeds."
        )
    conf = result.conf_int()
    table = pd.DataFrame(
        {
            "term": result.params.index,
            "coef": result.params.to_numpy(),
            "std_err": result.bse.to_numpy(),
            "p_value": result.pvalues.to_numpy(),
            "odds_ratio": np.exp(result.params.to_numpy()),
            "or_low": np.exp(conf[0].to_numpy()),
            "or_high": np.exp(conf[1].to_numpy()),
        }
    )
    converged = bool(result.mle_retvals.get("converged", True))
    note = "" if converged else "the optimiser did not converge: treat the estimates as unreliable"
    return LogitFit(formula, n, successes, table, note=note, converged=converged, warnings=caught)


def width_trend(trials: pd.DataFrame, width: str = "width", by: str | None = "curriculum") -> pd.DataFrame:
    """Trend of success against log2(width) per value of `by`: one logistic fit per group.

    Columns: by, n, successes, odds_ratio_per_doubling with or_low/or_high, p_value, note (why a fit is missing).
    """
    rows = []
    for key, group in grouped(trials, [by] if by else []):
        fit = logistic_regression(group, f"success ~ np.log2({width})")
        slope = fit.table[fit.table["term"] == f"np.log2({width})"]
        row = {**key, "n": fit.n, "successes": fit.successes, "widths": group[width].nunique()}
        if len(slope):
            s = slope.iloc[0]
            row.update(odds_ratio_per_doubling=s.odds_ratio, or_low=s.or_low, or_high=s.or_high, p_value=s.p_value)
        else:
            row.update(odds_ratio_per_doubling=math.nan, or_low=math.nan, or_high=math.nan, p_value=math.nan)
        row["note"] = fit.note
        row["rule"] = rules_named(group)
        rows.append(row)
    return pd.DataFrame(rows)


def rejudged_rate_table(trials: pd.DataFrame, curves: pd.DataFrame, rules: list, by: list[str]) -> pd.DataFrame:
    """rate_table of the same runs under each success rule (outcomes.rejudge), stacked; `rule` names each."""
    from analysis.outcomes import rejudge

    tables = [rate_table(rejudge(trials, curves, rule), by) for rule in rules]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
