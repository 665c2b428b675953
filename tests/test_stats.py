"""The paired t-test and the Student t distribution behind it, against closed forms and tables."""

import math

import numpy as np
import pytest

from feph_finetune.results.stats import paired_t, regularized_incomplete_beta, t_cdf, t_ppf, t_two_sided_p


@pytest.mark.parametrize("x", [0.01, 0.2, 0.5, 0.77, 0.99])
@pytest.mark.parametrize(
    ("a", "b", "closed_form"),
    [
        (1.0, 1.0, lambda x: x),
        (3.5, 1.0, lambda x: x**3.5),
        (1.0, 4.0, lambda x: 1.0 - (1.0 - x) ** 4),
        # Beta(2, 3): the binomial sum over j = 2..4 of C(4, j) x^j (1 - x)^(4 - j).
        (2.0, 3.0, lambda x: sum(math.comb(4, j) * x**j * (1 - x) ** (4 - j) for j in range(2, 5))),
    ],
)
def test_incomplete_beta_matches_closed_forms(x, a, b, closed_form):
    assert regularized_incomplete_beta(x, a, b) == pytest.approx(closed_form(x), rel=1e-10, abs=1e-13)


def test_incomplete_beta_symmetry_and_bounds():
    assert regularized_incomplete_beta(0.5, 7.3, 7.3) == pytest.approx(0.5, abs=1e-12)
    assert regularized_incomplete_beta(0.3, 2.5, 9.0) == pytest.approx(1.0 - regularized_incomplete_beta(0.7, 9.0, 2.5))
    assert regularized_incomplete_beta(0.0, 2.0, 3.0) == 0.0
    assert regularized_incomplete_beta(1.0, 2.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        regularized_incomplete_beta(0.5, 0.0, 1.0)


def _cdf_df1(t):  # Cauchy
    return 0.5 + math.atan(t) / math.pi


def _cdf_df2(t):
    return 0.5 + t / (2.0 * math.sqrt(2.0 + t * t))


def _cdf_df3(t):
    u = t / math.sqrt(3.0)
    return 0.5 + (u / (1.0 + u * u) + math.atan(u)) / math.pi


def _cdf_df4(t):
    s = t * t / 4.0
    return 0.5 + 0.375 * t / math.sqrt(1.0 + s) * (1.0 - s / (3.0 * (1.0 + s)))


@pytest.mark.parametrize("t", [-7.5, -2.0, -0.3, 0.0, 0.4, 1.0, 2.776, 12.7])
@pytest.mark.parametrize(("df", "closed_form"), [(1, _cdf_df1), (2, _cdf_df2), (3, _cdf_df3), (4, _cdf_df4)])
def test_t_cdf_matches_closed_forms_for_small_df(t, df, closed_form):
    assert t_cdf(t, df) == pytest.approx(closed_form(t), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize(
    ("df", "critical"),
    # Two-sided 5% critical values from printed t tables.
    [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (10, 2.228), (30, 2.042), (10**7, 1.960)],
)
def test_t_ppf_reproduces_table_critical_values(df, critical):
    assert t_ppf(0.975, df) == pytest.approx(critical, abs=5e-4)
    assert t_ppf(0.025, df) == pytest.approx(-critical, abs=5e-4)


@pytest.mark.parametrize("q", [0.001, 0.1, 0.5, 0.8, 0.995])
@pytest.mark.parametrize("df", [1, 3, 4.5, 20])
def test_t_ppf_inverts_the_cdf(q, df):
    assert t_cdf(t_ppf(q, df), df) == pytest.approx(q, rel=1e-9)


def test_t_two_sided_p_reference_values():
    assert t_two_sided_p(2.0, 10) == pytest.approx(0.0734, abs=1e-4)
    assert t_two_sided_p(-2.0, 10) == t_two_sided_p(2.0, 10)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert t_two_sided_p(math.inf, 5) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_two_sided_p(1.0, 0)


def test_paired_t_matches_the_textbook_formulas():
    differences = [0.12, 0.05, 0.20, 0.09, 0.14]
    result = paired_t(differences)
    values = np.array(differences)
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    t = values.mean() / standard_error
    assert result["n"] == 5 and result["df"] == 4
    assert result["mean"] == pytest.approx(values.mean())
    assert result["sd"] == pytest.approx(values.std(ddof=1))
    assert result["t"] == pytest.approx(t)
    assert result["p"] == pytest.approx(2.0 * (1.0 - _cdf_df4(t)), rel=1e-8)
    low, high = result["ci95"]
    assert low == pytest.approx(values.mean() - 2.776445 * standard_error, rel=1e-6)
    assert high == pytest.approx(values.mean() + 2.776445 * standard_error, rel=1e-6)


def test_paired_t_is_symmetric_in_the_sign_of_the_differences():
    forward, backward = paired_t([1.0, 2.0, 3.0, 4.0, 5.0]), paired_t([-1.0, -2.0, -3.0, -4.0, -5.0])
    assert backward["t"] == pytest.approx(-forward["t"])
    assert backward["p"] == pytest.approx(forward["p"])
    assert backward["ci95"] == pytest.approx((-forward["ci95"][1], -forward["ci95"][0]))
    assert 0.0 < forward["p"] < 0.05


def test_paired_t_without_two_pairs_has_no_test():
    single = paired_t([0.2])
    assert single["n"] == 1 and single["mean"] == pytest.approx(0.2)
    assert single["p"] is None and single["ci95"] is None and single["t"] is None
    empty = paired_t([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["p"] is None


def test_paired_t_with_all_equal_differences_does_not_crash():
    # 0.3 - 0.2 is not exactly 0.1: the spread left by rounding must count as none.
    shifted = paired_t([0.3 - 0.2, 0.1, 0.1, 0.4 - 0.3])
    assert shifted["sd"] == 0.0 and shifted["t"] == math.inf and shifted["p"] == 0.0
    assert shifted["ci95"] == pytest.approx((0.1, 0.1))
    assert paired_t([-0.1, -0.1])["t"] == -math.inf
    unchanged = paired_t([0.0, 0.0, 0.0])
    assert unchanged["t"] == 0.0 and unchanged["p"] == 1.0


def test_paired_t_refuses_non_finite_differences():
    with pytest.raises(ValueError, match="position 1"):
        paired_t([0.1, float("nan"), 0.2])
