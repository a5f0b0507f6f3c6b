"""The statistics of analysis/ against hand-computed cases, scipy/statsmodels/lifelines and brute-force simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, fisher_exact, mannwhitneyu, norm

from analysis import continuous, failure, outcomes, planning, rates, survival

Z = norm.ppf(0.975)


def wilson_by_hand(s: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = s / n
    centre = p + Z * Z / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre - spread) / (1 + Z * Z / n), (centre + spread) / (1 + Z * Z / n)


def frame(outcome_list, **columns) -> pd.DataFrame:
    """A trials frame from outcomes (for the pure table functions)."""
    data = {"outcome": outcome_list, "rule": "seq_error@201 < 0.01", **columns}
    return pd.DataFrame(data)


# --- outcomes and success rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "reason", "success", "expected"),
    [
        ("FINISHED", "success", True, "success"),
        ("FINISHED", "max_steps", False, "failed"),
        ("FINISHED", "max_minutes", False, "failed"),
        ("FINISHED", "no_progress", False, "failed"),
        ("FINISHED", "diverged", False, "diverged"),
        ("FAILED", "error", False, "crashed"),
        ("FAILED", None, False, "crashed"),
        ("KILLED", None, False, "censored"),
        ("RUNNING", float("nan"), False, "censored"),
        ("FINISHED", "success", False, "censored"),  # stopped by another rule's success
        ("KILLED", None, True, "success"),  # succeeded before the driver was killed
    ],
)
def test_every_run_gets_one_outcome(status, reason, success, expected):
    assert outcomes.classify_outcome(status, reason, success) == expected


def test_first_success_step_holds_for_k_evaluations():
    steps, values = np.array([1, 2, 3, 4, 5]), np.array([0.5, 0.0, 0.2, 0.0, 0.0])
    assert outcomes.first_success_step(steps, values, 0.01, 1) == 2
    assert outcomes.first_success_step(steps, values, 0.01, 2) == 5
    assert math.isnan(outcomes.first_success_step(steps, values, 0.01, 3))
    assert outcomes.first_success_step(steps, values, 0.3, 2) == 3  # strict '<': 0.2 passes 0.3
    assert math.isnan(outcomes.first_success_step(steps, np.full(5, 0.01), 0.01, 1))  # 0.01 is not below 0.01


def test_a_confirmed_rule_counts_a_pass_only_where_its_confirmation_passed():
    steps, values = np.array([1, 2, 3, 4, 5]), np.array([0.5, 0.0, 0.2, 0.0, 0.0])
    assert outcomes.first_success_step(steps, values, 0.01, 1, {2: 0.05, 4: 0.0}) == 4
    assert outcomes.first_success_step(steps, values, 0.01, 1, {2: 0.0}) == 2
    # hold 2: the failed confirmation at 5 restarts the streak, so nothing is left to pass.
    assert math.isnan(outcomes.first_success_step(steps, values, 0.01, 2, {5: 0.02}))
    with pytest.raises(ValueError, match="no confirmation test was logged at step 2"):
        outcomes.first_success_step(steps, values, 0.01, 1, {4: 0.0})


def test_rejudging_a_confirmed_rule_reads_the_confirmation_curve():
    trials = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "mlflow_status": "FINISHED",
            "stop_reason": ["success", "max_steps"],
            "steps": [30, 40],
            "wall_time_s": [3.0, 4.0],
        }
    )
    points = [("a", "eval/seq_error@401", s, v) for s, v in ((10, 0.0), (20, 0.5), (30, 0.0))]
    points += [("a", "confirm/seq_error@401", 10, 0.02), ("a", "confirm/seq_error@401", 30, 0.0)]
    points += [("b", "eval/seq_error@401", s, v) for s, v in ((20, 0.0), (40, 0.3))]
    points += [("b", "confirm/seq_error@401", 20, 0.1)]
    points += [(r, "time/wall_s", s, s / 10) for r, last in (("a", 30), ("b", 40)) for s in range(10, last + 1, 10)]
    curves = pd.DataFrame(points, columns=["run_id", "metric", "step", "value"])
    rule = outcomes.SuccessRule(length=401, confirm=256)
    judged = outcomes.rejudge(trials, curves, rule)
    assert judged["success"].tolist() == [True, False]
    assert judged["steps_to_success"].tolist()[0] == 30 and math.isnan(judged["steps_to_success"].tolist()[1])
    assert judged["wall_to_event_s"].tolist() == [3.0, 4.0]
    # Without the confirmation, both pass at their first test.
    assert outcomes.rejudge(trials, curves, outcomes.SuccessRule(length=401))["steps_to_success"].tolist() == [10, 20]
    unconfirmed = curves[curves["metric"] != "confirm/seq_error@401"]
    with pytest.raises(ValueError, match="only runs recorded with that rule"):
        outcomes.rejudge(trials, unconfirmed, rule)


def test_success_rule_names_itself_and_checks_its_fields():
    assert outcomes.SuccessRule().describe() == "seq_error@201 < 0.01"
    assert outcomes.SuccessRule("digit_error", 0.001, 401, 3).describe() == "digit_error@401 < 0.001 held 3x"
    assert outcomes.SuccessRule(length=401).curve == "eval/seq_error@401"
    with pytest.raises(ValueError, match="seq_error or digit_error"):
        outcomes.SuccessRule(metric="loss")
    params = {"success_metric": "seq_error", "success_threshold": 0.01, "success_length": 201, "success_hold": 1}
    assert outcomes.rule_from_params(params) == outcomes.SuccessRule()
    confirmed = outcomes.rule_from_params({**params, "success_confirm": "256"})
    assert confirmed == outcomes.SuccessRule(confirm=256)
    assert confirmed.describe() == "seq_error@201 < 0.01 confirmed on 256"
    assert confirmed.confirm_curve == "confirm/seq_error@201"
    assert outcomes.rule_from_params({"seed": 1}) is None


def test_counts_table_never_drops_a_run():
    trials = frame(["success", "failed", "crashed", "censored", "diverged", "success"], width=[4, 4, 4, 8, 8, 8])
    table = outcomes.counts_table(trials, ["width"])
    assert table.to_dict("records") == [
        {
            "width": 4,
            "n_runs": 3,
            "n_success": 1,
            "n_failed": 1,
            "n_diverged": 0,
            "n_crashed": 1,
            "n_censored": 0,
            "rule": "seq_error@201 < 0.01",
        },
        {
            "width": 8,
            "n_runs": 3,
            "n_success": 1,
            "n_failed": 0,
            "n_diverged": 1,
            "n_crashed": 0,
            "n_censored": 1,
            "rule": "seq_error@201 < 0.01",
        },
    ]


# --- intervals ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("s", "n"), [(0, 10), (10, 10), (3, 10), (1, 1), (0, 1), (17, 40)])
def test_wilson_matches_the_formula_and_statsmodels(s, n):
    low, high = rates.wilson_interval(s, n)
    assert (low, high) == pytest.approx(wilson_by_hand(s, n), abs=1e-12)
    assert 0 <= low <= s / n <= high <= 1


def test_intervals_at_zero_and_all_successes():
    assert rates.wilson_interval(0, 10) == (0.0, pytest.approx(Z * Z / (10 + Z * Z)))  # z^2 / (n + z^2)
    assert rates.wilson_interval(10, 10) == (pytest.approx(10 / (10 + Z * Z)), 1.0)
    assert rates.wilson_interval(0, 12)[0] == 0.0  # not statsmodels' rounding error of 2.8e-17
    # Clopper-Pearson at 0/n: upper end 1 - (alpha/2)^(1/n), by hand.
    assert rates.exact_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert rates.exact_interval(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    assert all(math.isnan(v) for v in rates.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        rates.wilson_interval(4, 3)


@pytest.mark.parametrize(("rate", "n"), [(0.5, 20), (0.2, 50), (0.7, 40), (0.15, 60)])
def test_wilson_covers_the_true_rate_in_93_to_97_percent_of_2000_pools(rate, n):
    rng = np.random.default_rng(12345)
    successes = rng.binomial(n, rate, size=2000)
    covered = [low <= rate <= high for low, high in (rates.wilson_interval(int(s), n) for s in successes)]
    coverage = float(np.mean(covered))
    assert 0.93 <= coverage <= 0.97
    # ... and the simulation agrees with the exact coverage (sum of binomial probabilities of covering counts).
    exact = sum(
        binom.pmf(s, n, rate)
        for s in range(n + 1)
        if rates.wilson_interval(s, n)[0] <= rate <= rates.wilson_interval(s, n)[1]
    )
    assert abs(coverage - exact) < 4 * math.sqrt(exact * (1 - exact) / 2000)


@pytest.mark.parametrize(("rate", "n"), [(0.3, 15), (0.3, 30), (0.05, 10), (0.5, 7)])
def test_clopper_pearson_never_covers_less_than_95_percent(rate, n):
    # Wilson dips to 91.5% at (0.3, 15): where that matters, read the exact interval.
    covering = [s for s in range(n + 1) if rates.exact_interval(s, n)[0] <= rate <= rates.exact_interval(s, n)[1]]
    assert binom.pmf(covering, n, rate).sum() >= 0.95


def test_rate_table_counts_every_run_and_gives_both_intervals():
    trials = frame(["success", "failed", "crashed", "censored", "success", "failed"], curriculum=["a"] * 3 + ["b"] * 3)
    table = rates.rate_table(trials, ["curriculum"]).set_index("curriculum")
    assert table.loc["a", ["successes", "n", "n_runs", "n_crashed"]].tolist() == [1, 3, 3, 1]
    assert table.loc["a", "wilson_low"] == pytest.approx(wilson_by_hand(1, 3)[0])
    assert table.loc["b", "rate"] == pytest.approx(1 / 3)
    excluded = rates.rate_table(trials, ["curriculum"], censored="exclude").set_index("curriculum")
    assert excluded.loc["b", "n"] == 2 and excluded.loc["b", "n_censored"] == 1 and excluded.loc["b", "rate"] == 0.5


# --- comparisons -------------------------------------------------------------------------------------------------
def test_newcombe_difference_matches_the_published_example_and_the_formula():
    diff = rates.compare_two(56, 70, 48, 80)
    assert diff.difference == pytest.approx(56 / 70 - 48 / 80)
    assert (round(diff.low, 4), round(diff.high, 4)) == (0.0524, 0.3339)  # Newcombe (1998) Table II, method 10
    (l1, u1), (l2, u2) = wilson_by_hand(56, 70), wilson_by_hand(48, 80)
    p1, p2 = 56 / 70, 48 / 80
    assert diff.low == pytest.approx(p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2))
    assert diff.high == pytest.approx(p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))
    edge = rates.compare_two(10, 10, 0, 10)
    assert edge.high == 1.0 and 0 < edge.low < 1


def test_fisher_exact_by_hand():
    # [[3, 0], [0, 3]]: each extreme table has probability 1 / C(6, 3) = 1/20, two-sided p = 0.1.
    assert rates.compare_two(3, 3, 0, 3).p_value == pytest.approx(0.1)
    assert rates.compare_two(2, 5, 4, 6).p_value == pytest.approx(fisher_exact([[2, 3], [4, 2]])[1])


def test_holm_by_hand():
    adjusted, reject = rates.holm([0.01, 0.04, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    assert reject.tolist() == [True, False, False]


def test_pairwise_table_adjusts_every_pair():
    trials = frame(["success"] * 5 + ["failed"] * 5 + ["failed"] * 4, width=[4] * 5 + [8] * 5 + [16] * 4)
    table = rates.pairwise_table(trials, ["width"])
    assert table[["a", "b"]].values.tolist() == [
        ["width=4", "width=8"],
        ["width=4", "width=16"],
        ["width=8", "width=16"],
    ]
    assert table.loc[0, "p_value"] == pytest.approx(fisher_exact([[5, 0], [0, 5]])[1])
    assert table["p_holm"].tolist() == pytest.approx(rates.holm(table["p_value"])[0])


def test_logistic_regression_of_one_binary_axis_is_the_log_odds_ratio():
    outcome = ["success"] * 3 + ["failed"] * 7 + ["success"] * 6 + ["failed"] * 4
    trials = frame(outcome, curriculum=["none"] * 10 + ["length"] * 10)
    fit = rates.logistic_regression(trials, "success ~ C(curriculum, Treatment('none'))")
    coef = fit.table.set_index("term")["coef"]
    assert coef.iloc[0] == pytest.approx(math.log(3 / 7), abs=1e-6)  # log odds of success without curriculum
    assert coef.iloc[1] == pytest.approx(math.log((6 / 4) / (3 / 7)), abs=1e-6)  # log odds ratio = log 3.5
    assert fit.note == "" and fit.n == 20 and fit.successes == 9


def test_logistic_regression_reports_perfect_separation():
    trials = frame(["failed"] * 4 + ["success"] * 4, width=[4] * 4 + [16] * 4)
    fit = rates.logistic_regression(trials, "success ~ np.log2(width)")
    assert "perfect separation" in fit.note and fit.table.empty
    trend = rates.width_trend(trials.assign(curriculum="length"), "width", "curriculum")
    assert math.isnan(trend.loc[0, "odds_ratio_per_doubling"]) and "perfect separation" in trend.loc[0, "note"]
    assert (
        "all 3 runs failed"
        in rates.logistic_regression(frame(["failed"] * 3, width=[4, 8, 16]), "success ~ width").note
    )


# --- planning seeds ----------------------------------------------------------------------------------------------
def test_seeds_for_a_known_rate_by_hand():
    assert planning.seeds_for_rate(0.5) == 5  # 1 - 0.5^4 = 0.9375 < 0.95 <= 0.96875
    assert planning.seeds_for_rate(0.05) == 59  # log(0.05) / log(0.95) = 58.4
    assert planning.seeds_for_rate(1.0) == 1 and planning.seeds_for_rate(0.0) == math.inf
    assert planning.seeds_for_rate(1e-17) == math.inf


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_seeds_for_a_known_rate_against_brute_force_simulation(rate):
    k = planning.seeds_for_rate(rate)
    rng = np.random.default_rng(7)
    pools = rng.random((20000, k)) < rate  # 20000 simulated pools of k seeds
    hit = pools.any(axis=1).mean()
    hit_fewer = pools[:, : k - 1].any(axis=1).mean()
    se = math.sqrt(0.95 * 0.05 / 20000)
    assert hit >= 0.95 - 3 * se and abs(hit - planning.prob_at_least_one(rate, k)) < 4 * se
    assert abs(hit_fewer - planning.prob_at_least_one(rate, k - 1)) < 4 * se
    assert planning.prob_at_least_one(rate, k - 1) < 0.95 <= planning.prob_at_least_one(rate, k)


def test_predictive_seeds_against_simulation_of_the_posterior():
    plan = planning.seeds_for_one_success(3, 10)
    assert (plan.point, plan.conservative) == (planning.seeds_for_rate(0.3), planning.seeds_for_rate(plan.rate_low))
    assert plan.point <= plan.predictive <= plan.conservative
    rng = np.random.default_rng(3)
    rate = rng.beta(0.5 + 3, 0.5 + 7, size=40000)  # posterior under Jeffreys' prior
    for k in (plan.predictive - 1, plan.predictive):
        simulated = (rng.random((40000, k)) < rate[:, None]).any(axis=1).mean()
        assert abs(simulated - planning.predictive_at_least_one(3, 10, k)) < 0.006
    assert (
        planning.predictive_at_least_one(3, 10, plan.predictive - 1)
        < 0.95
        <= planning.predictive_at_least_one(3, 10, plan.predictive)
    )
    zero = planning.seeds_for_one_success(0, 10)
    assert zero.point == zero.conservative == math.inf and math.isfinite(zero.predictive)


def test_seeds_for_a_half_width_by_hand():
    # Wilson half-width at p = 0.5: n = 92 gives 0.1001, n = 93 gives 0.0996 (Wald's z^2/4h^2 = 96.04 -> 97).
    assert planning.seeds_for_half_width(0.1) == 93
    assert planning.interval_half_width(0.5, 93) <= 0.1 < planning.interval_half_width(0.5, 92)
    assert planning.seeds_for_half_width(0.1, rate=0.1) < 93  # smaller rates need fewer seeds
    assert planning.seeds_for_half_width(0.1, method="beta") >= 93  # the exact interval is wider


def test_fisher_power_equals_enumeration_with_scipy():
    for n, rate_a, rate_b in [(7, 0.2, 0.7), (5, 0.0, 0.9), (6, 0.5, 0.5)]:
        brute = sum(
            binom.pmf(a, n, rate_a) * binom.pmf(b, n, rate_b)
            for a in range(n + 1)
            for b in range(n + 1)
            if fisher_exact([[a, n - a], [b, n - b]])[1] <= 0.05
        )
        assert planning.fisher_power(n, n, rate_a, rate_b) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize(("rate_a", "rate_b"), [(0.5, 0.9), (0.0, 0.3), (0.2, 0.6)])
def test_seeds_per_arm_reaches_80_percent_power_and_one_fewer_does_not(rate_a, rate_b):
    n = planning.seeds_per_arm(rate_a, rate_b)
    assert planning.fisher_power(n, n, rate_a, rate_b) >= 0.8 > planning.fisher_power(n - 1, n - 1, rate_a, rate_b)
    # The scan from 0.8x the normal approximation finds the same n as a scan from 2.
    assert n == next(m for m in range(2, 500) if planning.fisher_power(m, m, rate_a, rate_b) >= 0.8)
    rng = np.random.default_rng(11)  # brute-force simulation of 1500 experiments at n seeds per arm
    a, b = rng.binomial(n, rate_a, 1500), rng.binomial(n, rate_b, 1500)
    simulated = np.mean([fisher_exact([[x, n - x], [y, n - y]])[1] <= 0.05 for x, y in zip(a, b, strict=True)])
    power = planning.fisher_power(n, n, rate_a, rate_b)
    assert abs(simulated - power) < 4 * math.sqrt(power * (1 - power) / 1500)
    assert planning.seeds_per_arm(0.3, 0.3) == math.inf


# --- time and compute to success -----------------------------------------------------------------------------------
def test_kaplan_meier_with_censoring_by_hand():
    # Times 2, 3, 3+, 5, 6+, 8 (+ = censored). S(2) = 5/6; S(3) = 5/6 * 4/5 = 2/3 (the run censored at 3 is still
    # at risk at 3); S(5) = 2/3 * 2/3 = 4/9; S(8) = 0. Median: first time S <= 1/2, i.e. 5.
    durations, events = np.array([2, 3, 3, 5, 6, 8]), np.array([1, 1, 0, 1, 0, 1])
    curve = survival.km_curve(durations, events).set_index("time")
    assert curve.loc[[2, 3, 5, 6, 8], "survival"].tolist() == pytest.approx([5 / 6, 2 / 3, 4 / 9, 4 / 9, 0.0])
    assert curve.loc[[2, 3, 5, 6, 8], "at_risk"].tolist() == [6, 5, 3, 2, 1]
    assert curve.loc[3, "censored"] == 1 and curve.loc[8, "success"] == 1.0
    median, low, high = survival.km_median(durations, events)
    assert median == 5 and low <= 5 <= high


def test_km_median_is_infinite_when_most_runs_never_succeed():
    median, _, high = survival.km_median(np.array([10, 20, 20, 20]), np.array([1, 0, 0, 0]))
    assert median == math.inf and high == math.inf


def test_km_table_censors_every_non_success_at_its_spent_steps():
    trials = frame(["success", "failed", "crashed", "diverged", "censored"], steps_to_event=[40, 100, 30, 5, 60])
    table = survival.km_table(trials, [])
    assert table.loc[0, ["n_runs", "events", "censored", "n_crashed"]].tolist() == [5, 1, 4, 1]
    assert table.loc[0, "success_by_end"] == pytest.approx(1 - (1 - 1 / 3))  # at t = 40, 3 runs at risk


def test_logrank_by_hand():
    # A: events at 1, 2; B: events at 3, 4. O_A = 2, E_A = 2/4 + 1/3, V = 1/4 + 2/9: chi2 = (O - E)^2 / V.
    a = frame(["success", "success"], steps_to_event=[1, 2])
    b = frame(["success", "success"], steps_to_event=[3, 4])
    expected = (2 - (0.5 + 1 / 3)) ** 2 / (0.25 + 2 / 9)
    test = survival.logrank(a, b)
    assert test.statistic == pytest.approx(expected)
    assert test.p_value == pytest.approx(1 - __import__("scipy.stats").stats.chi2.cdf(expected, 1))


def test_compute_per_success_counts_failed_runs():
    compute, wins = np.array([10.0, 20, 30, 40]), np.array([1, 0, 0, 1])
    point, low, high = survival.compute_per_success(compute, wins)
    rate_low, rate_high = rates.wilson_interval(2, 4)
    assert point == 50 and low == pytest.approx(25 / rate_high) and high == pytest.approx(25 / rate_low)
    point, low, high = survival.compute_per_success(compute, np.zeros(4))
    assert point == math.inf and high == math.inf and low == pytest.approx(25 / rates.wilson_interval(0, 4)[1])
    first = survival.compute_per_success(compute, wins, method="bootstrap", rng=np.random.default_rng(0))
    again = survival.compute_per_success(compute, wins, method="bootstrap", rng=np.random.default_rng(0))
    assert first == again and first[0] == 50 and first[1] <= 50 <= first[2]
    with pytest.raises(TypeError, match="default_rng"):
        survival.compute_per_success(compute, wins, method="bootstrap")


# --- continuous metrics --------------------------------------------------------------------------------------------
def test_iqm_by_hand():
    assert continuous.iqm(np.arange(1, 9)) == 4.5
    assert continuous.iqm(np.array([[1, 2], [3, 4], [5, 6], [7, 100]])) == 4.5  # all scores pooled


def test_stratified_bootstrap_by_hand():
    # Two runs scoring 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
    point, low, high = continuous.stratified_bootstrap(np.array([0.0, 1.0]), np.mean, np.random.default_rng(0), 4000)
    assert (point, low, high) == (0.5, 0.0, 1.0)
    # Resampling is within each task: a statistic of task 1 alone (constant) has a zero-width interval.
    scores = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    assert continuous.stratified_bootstrap(scores, lambda s: s[:, 1].mean(), np.random.default_rng(1), 200) == (5, 5, 5)
    again = [continuous.stratified_bootstrap(scores, continuous.iqm, np.random.default_rng(2), 300) for _ in range(2)]
    assert again[0] == again[1]
    with pytest.raises(TypeError, match="Generator"):
        continuous.stratified_bootstrap(scores, np.mean, 0)


def test_probability_of_improvement_by_hand_and_against_mann_whitney():
    assert continuous.probability_of_improvement([1, 2], [0, 3]) == 0.5
    assert continuous.probability_of_improvement([1, 1], [1, 1]) == 0.5
    assert continuous.probability_of_improvement([0.1, 0.2], [0.3, 0.4], higher_is_better=False) == 1.0
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 5, 12), rng.integers(0, 5, 9)
    u = mannwhitneyu(x, y).statistic
    assert continuous.probability_of_improvement(x, y) == pytest.approx(u / (12 * 9))
    point, low, high = continuous.probability_of_improvement_ci(x, y, np.random.default_rng(0), reps=500)
    assert low <= point <= high


# --- failure probes: the tables of neuralgpu.probes rows -----------------------------------------------------------
def probe_rows(carry_errors: list[float], random_error: float, structured_error: float, right: bool) -> list[dict]:
    """One run's probe table in the form neuralgpu.probes.run_probes returns it (badd, success length 9)."""
    model = "000011" if right else "00_111"
    rows = [
        {"probe": "carry_chain", "carry": c, "length": 11, "seq_error": e, "digit_error": e / 2, "examples": 8}
        for c, e in zip([1, 2, 4], carry_errors, strict=True)
    ]
    rows.append(
        {
            "probe": "equal_stretch",
            "length": 9,
            "operands": "2 + 1",
            "example": f"0010 + 0001 = 000011   model: {model} ({'right' if right else 'wrong'})",
            "correct": right,
        }
    )
    rows.append({"probe": "random", "length": 9, "seq_error": random_error, "digit_error": 0.1, "examples": 8})
    rows.append({"probe": "structured", "length": 9, "seq_error": structured_error, "digit_error": 0.2, "examples": 8})
    return rows


def test_split_example_reads_a_format_example_line():
    line = "0010 * 0001 = 00000010   model: 0000?01_ (wrong)"
    assert failure.split_example(line) == ("0010 * 0001", "00000010", "0000?01_")


def test_split_probe_table_by_hand():
    table = pd.DataFrame(
        [{"run_id": "a", "width": 4, **r} for r in probe_rows([0.0, 0.25, 1.0], 0.0, 0.5, True)]
        + [{"run_id": "b", "width": 8, **r} for r in probe_rows([0.0, 0.0, 0.125], 0.125, 1.0, False)]
    )
    parts = failure.split_probe_table(table, ["run_id", "width"])
    carries = parts["carries"]
    assert list(carries.columns) == ["run_id", "width", "carry", "length", "seq_error", "digit_error", "examples"]
    assert carries["carry"].tolist() == [1, 2, 4, 1, 2, 4] and carries["carry"].dtype.kind == "i"
    assert carries["seq_error"].tolist() == [0.0, 0.25, 1.0, 0.0, 0.0, 0.125]
    stretches = parts["stretches"]
    assert list(stretches.columns) == ["run_id", "width", "length", "operands", "input", "expected", "model", "correct"]
    assert stretches.iloc[1].tolist() == ["b", 8, 9, "2 + 1", "0010 + 0001", "000011", "00_111", False]
    assert stretches["correct"].tolist() == [True, False]
    structured = parts["structured"]
    assert structured[["run_id", "probe", "seq_error"]].values.tolist() == [
        ["a", "random", 0.0],
        ["a", "structured", 0.5],
        ["b", "random", 0.125],
        ["b", "structured", 1.0],
    ]
    side = failure.structured_against_random(structured)
    assert side[["run_id", "length", "seq_error_random", "seq_error_structured"]].values.tolist() == [
        ["a", 9, 0.0, 0.5],
        ["b", 9, 0.125, 1.0],
    ]
    empty = failure.split_probe_table(pd.DataFrame(columns=["run_id"]), ["run_id"])  # no run recorded probes
    assert all(len(part) == 0 for part in empty.values()) and "carry" in empty["carries"]


def test_probe_cell_table_by_hand():
    # Cell width=4: 8 runs whose error at carry 4 sorts to [0, 0, 0, 0.1, 0.2, 0.9, 1, 1]: median (0.1 + 0.2) / 2,
    # IQM the mean of the middle four, (0 + 0.1 + 0.2 + 0.9) / 4 = 0.3. Cell width=8: one run, error 0.5 everywhere.
    errors = [0.9, 0.0, 1.0, 0.1, 0.0, 1.0, 0.2, 0.0]
    rows = [
        {"run_id": f"r{i}", "width": 4, "carry": c, "length": 11, "seq_error": e if c == 4 else 0.0}
        for i, e in enumerate(errors)
        for c in (1, 4)
    ]
    rows += [{"run_id": "w8", "width": 8, "carry": c, "length": 11, "seq_error": 0.5} for c in (1, 4)]
    table = failure.probe_cell_table(pd.DataFrame(rows), ["width"], "carry", np.random.default_rng(0), reps=500)
    assert table[["width", "carry", "n_runs"]].values.tolist() == [[4, 1, 8], [4, 4, 8], [8, 1, 1], [8, 4, 1]]
    hard = table.iloc[1]
    assert hard["median"] == pytest.approx(0.15) and hard["iqm"] == pytest.approx(0.3)
    assert hard["low"] <= hard["iqm"] <= hard["high"] and hard["low"] < hard["high"]
    assert table.iloc[0][["iqm", "low", "high"]].tolist() == [0.0, 0.0, 0.0]
    assert table.iloc[3][["median", "iqm", "low", "high"]].tolist() == [0.5, 0.5, 0.5, 0.5]


def test_rate_figure_without_x_places_every_hue_on_the_shared_configuration_ticks():
    import matplotlib

    matplotlib.use("Agg")
    from analysis.figures import rate_figure

    trials = pd.DataFrame(
        [
            {"env": env, "q_target": q, "outcome": "success" if (env == "Copy" or s < 1) else "failed", "rule": "r"}
            for env in ("Copy", "DuplicatedInput", "Reverse")
            for q in ("watkins", "one_step")
            for s in range(2)
        ]
    )
    table = rates.rate_table(trials, ["env", "q_target"])
    fig = rate_figure(table, x=None, hue="q_target")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["env=Copy", "env=DuplicatedInput", "env=Reverse"]
    for line in ax.lines:
        if len(line.get_xdata()) == 3:  # one point per env for each q_target, near its tick
            assert np.allclose(np.round(line.get_xdata()), [0, 1, 2])
