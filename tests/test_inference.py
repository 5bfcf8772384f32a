"""Per-task statistics: area under the curve, first reach with k/n, Holm, the interaction permutation test."""

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from scipy import stats

from sb3_masked_attention.evaluation.inference import area_under_curve, holm, interaction_test, seeds_summary


def curve_frame(curves: dict[tuple[str, int], list[tuple[int, float]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"method": method, "env": "E", "seed": seed, "timesteps": t, "score": y}
            for (method, seed), points in curves.items()
            for t, y in points
        ]
    )


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(1, 10_000), min_size=2, max_size=8, unique=True),
    heights=st.lists(st.floats(-5, 5), min_size=8, max_size=8),
)
def test_area_under_curve_is_the_mean_height_of_the_interpolated_curve(steps, heights):
    steps = sorted(steps)
    ys = heights[: len(steps)]
    scores = curve_frame({("m", 0): list(zip(steps, ys))})
    dense = np.linspace(steps[0], steps[-1], 200_001)  # slow reference: the piecewise-linear curve, sampled finely
    reference = np.interp(dense, steps, ys).mean()
    assert area_under_curve(scores)["score"].item() == pytest.approx(reference, abs=1e-3)


def test_area_under_curve_per_run_with_a_budget_and_one_point_runs():
    scores = curve_frame(
        {("a", 0): [(10, 0.0), (20, 1.0), (30, 1.0)], ("a", 1): [(10, 0.5)], ("b", 0): [(10, 1.0), (40, 0.0)]}
    )
    table = area_under_curve(scores).set_index(["method", "seed"])["score"]
    assert table[("a", 0)] == pytest.approx(0.75) and table[("a", 1)] == 0.5 and table[("b", 0)] == pytest.approx(0.5)
    assert area_under_curve(scores, budget=20).set_index(["method", "seed"])["score"][("a", 0)] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no evaluation at or before budget=5"):
        area_under_curve(scores, budget=5)
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['timesteps'\]"):
        area_under_curve(scores.drop(columns="timesteps"))


def test_seeds_summary_puts_k_of_n_beside_first_reach_and_counts_who_ended_there():
    scores = curve_frame(
        {
            ("m", 0): [(10, 0.2), (20, 1.0), (30, 1.0)],
            ("m", 1): [(10, 1.0), (20, 0.3), (30, 0.4)],  # touched the threshold once
            ("m", 2): [(10, 0.0), (20, 0.0), (30, 0.0)],
        }
    )
    row = seeds_summary(scores, 0.95).iloc[0]
    assert row["first_reached_0.95"] == "15 (2/3)" and row["final_at_least_0.95"] == "1/3"
    assert row["final_mean"] == pytest.approx(1.4 / 3) and row["seeds"] == 3


def holm_reference(p):
    """Slow reference: step down through the sorted p-values, adjusted = max over earlier of (m - rank) * p."""
    m, order = len(p), sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_matches_the_step_down_reference(p):
    np.testing.assert_allclose(holm(p), holm_reference(p))


def test_holm_known_values_and_bad_input():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    with pytest.raises(ValueError, match="probabilities in"):
        holm([0.5, 1.2])


def two_by_two(effect: float, main_a: float = 0.0, main_b: float = 0.0, n: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b = np.repeat(["none", "specialized"], 2 * n), np.tile(np.repeat([4, 28], n), 2)
    y = rng.normal(0, 0.1, 4 * n) + main_a * (a == "specialized") + main_b * (b == 28)
    y += effect * ((a == "specialized") & (b == 28))
    return y, a, b


def test_interaction_test_finds_an_interaction_and_ignores_main_effects():
    y, a, b = two_by_two(effect=-0.3)
    result = interaction_test(y, a, b, reps=2000)
    assert result["p_value"] < 0.01
    means = pd.Series(y).groupby([a, b]).mean()
    expected = (means["none", 4] - means["specialized", 4]) - (means["none", 28] - means["specialized", 28])
    assert result["difference_of_differences"] == pytest.approx(expected)
    assert result["statistic"] == pytest.approx(10 * expected**2 / 4)  # balanced 2 x 2: n per cell x dod^2 / 4
    null = interaction_test(*two_by_two(effect=0.0, main_a=5.0, main_b=-3.0, seed=1), reps=2000)
    assert null["p_value"] > 0.05  # big main effects, no interaction


@settings(max_examples=30, deadline=None)
@given(shift_a=st.floats(-10, 10), shift_b=st.floats(-10, 10), seed=st.integers(0, 100))
def test_interaction_statistic_is_blind_to_additive_main_effects(shift_a, shift_b, seed):
    y, a, b = two_by_two(effect=0.2, seed=seed)
    shifted = y + shift_a * (a == "specialized") + shift_b * (b == 28)
    base, moved = interaction_test(y, a, b, reps=1), interaction_test(shifted, a, b, reps=1)
    assert moved["statistic"] == pytest.approx(base["statistic"], rel=1e-6, abs=1e-9)


def test_interaction_test_under_the_null_is_calibrated():
    p_values = [interaction_test(*two_by_two(effect=0.0, n=6, seed=s), reps=199)["p_value"] for s in range(300)]
    assert 0.05 <= np.mean(np.array(p_values) <= 0.1) <= 0.16  # 10% of null p-values below 0.1 (+-3 standard errors)


def test_interaction_test_refuses_empty_cells_and_mismatched_lengths():
    y, a, b = two_by_two(effect=0.0, n=3)
    with pytest.raises(ValueError, match="needs >= 2 runs"):
        interaction_test(y[:7], a[:7], b[:7])
    with pytest.raises(ValueError, match="differ in length"):
        interaction_test(y, a[:-1], b)


def test_one_way_test_statistic_matches_the_between_group_sum_of_squares_and_detects_a_shift():
    from sb3_masked_attention.evaluation.inference import one_way_test

    rng = np.random.default_rng(0)
    groups = np.repeat(["none", "specialized", "diversified", "monotonic"], 8)
    y = rng.normal(0, 1, 32)
    means = pd.Series(y).groupby(groups).mean()
    reference = sum(8 * (means[g] - y.mean()) ** 2 for g in means.index)  # slow reference
    result = one_way_test(y, groups, reps=4000)
    assert result["statistic"] == pytest.approx(reference) and result["range"] == pytest.approx(means.max() - means.min())
    f_test = stats.f_oneway(*[y[groups == g] for g in means.index]).pvalue  # normal data: close to the F-test's
    assert result["p_value"] == pytest.approx(f_test, abs=0.005)
    shifted = y + 3.0 * (groups == "monotonic")
    assert one_way_test(shifted, groups, reps=500)["p_value"] < 0.01
    p_values = [one_way_test(rng.normal(0, 1, 32), groups, reps=199, seed=s)["p_value"] for s in range(200)]
    assert 0.04 <= np.mean(np.array(p_values) <= 0.1) <= 0.17  # calibrated under the null
    with pytest.raises(ValueError, match="every group needs >= 2"):
        one_way_test([1.0, 2.0, 3.0], ["a", "a", "b"])


def test_detectable_difference_is_the_normal_approximation_and_validates():
    from sb3_masked_attention.evaluation.inference import detectable_difference

    # z_0.975 + z_0.8 = 1.959964 + 0.841621 = 2.801585
    assert detectable_difference(0.128, 20) == pytest.approx(2.801585 * 0.128 * np.sqrt(2 / 20), rel=1e-6)
    assert detectable_difference(0.2, 5, power=0.5) == pytest.approx(1.959964 * 0.2 * np.sqrt(2 / 5), rel=1e-6)
    assert detectable_difference(0.1, 40) == pytest.approx(detectable_difference(0.1, 10) / 2)  # 1/sqrt(n)
    for bad in (dict(std=-1.0, runs_per_arm=5), dict(std=0.1, runs_per_arm=1), dict(std=0.1, runs_per_arm=5, power=1.0)):
        with pytest.raises(ValueError):
            detectable_difference(**bad)
