"""The experiments' statistics (experiments/stats.py) on constructed data where the answer is known:
t quantiles and intervals, the paired gap, the one verdict rule (a real gap, a null gap, a gap of the
wrong sign or size), equality claims by two one-sided tests, Holm's correction; and the placement of
the V1 trade-off figure's labels (experiments/plots.py). Pure numpy/scipy (and matplotlib), no training."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments import plots, runs, stats


def _arm(values, seeds=None) -> dict[int, float]:
    """One variant's per-seed values, as decide() takes them."""
    values = [float(v) for v in values]
    return dict(zip(seeds if seeds is not None else range(len(values)), values))


# ---------------------------------------------------------------- t intervals


def test_t_quantiles_match_tables_and_fall_with_df():
    # Student's t, two-sided 95% (the 0.975 quantile), from printed tables
    assert stats.t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert stats.t_quantile(10) == pytest.approx(2.228, abs=1e-3)
    assert stats.t_quantile(35) == pytest.approx(2.030, abs=2e-3)  # between the tabulated 30 and 40
    assert stats.t_quantile(10_000) == pytest.approx(1.960, abs=2e-3)
    assert stats.t_quantile(4, level=0.90) == pytest.approx(2.132, abs=1e-3)  # the 90% TOST interval's
    qs = [stats.t_quantile(df) for df in range(1, 200)]
    assert all(b < a for a, b in zip(qs, qs[1:]))  # strictly falling towards 1.96
    assert qs[-1] > 1.959964
    with pytest.raises(ValueError, match="df"):
        stats.t_quantile(0)


def test_mean_ci_is_the_t_interval_and_covers_95_percent():
    v = [1.0, 2.0, 3.0, 4.0, 5.0]
    ci = stats.mean_ci(v)
    half = 2.776445 * np.std(v, ddof=1) / math.sqrt(5)
    assert ci.mean == 3.0 and ci.n == 5 and ci.half_width == pytest.approx(half, rel=1e-5)
    assert ci.lo == pytest.approx(3.0 - half, rel=1e-6) and ci.hi == pytest.approx(3.0 + half, rel=1e-6)
    # A 95% t interval from 5 normal draws covers the true mean about 95% of the time (a z interval,
    # 1.96 s.e., would cover only ~88%): 4,000 constructed samples.
    rng = np.random.default_rng(0)
    cover = np.mean([stats.mean_ci(rng.normal(3.0, 2.0, 5)).contains(3.0) for _ in range(4000)])
    assert 0.935 < cover < 0.965, cover
    one = stats.mean_ci([0.5])
    assert one.half_width == math.inf and one.n == 1 and "n=1" in one.fmt() and "n=1" in one.fmt_level()
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_ci([])


def test_t_test_p_matches_scipy_and_handles_constant_differences():
    d = np.array([0.01, 0.03, -0.005, 0.02, 0.015])
    assert stats.t_test_p(d) == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-12)
    assert stats.t_test_p(np.array([0.02])) == 1.0  # one seed: nothing to test
    assert stats.t_test_p(np.array([0.02, 0.02, 0.02])) == 0.0  # no spread, a nonzero gap
    assert stats.t_test_p(np.zeros(3)) == 1.0


# ---------------------------------------------------------------- ordering claims


def test_verdict_real_gap_null_gap_and_wrong_sign():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.05, 5)  # shared by both arms of a seed: pairing removes it
    hi = _arm(0.70 + seed_effect + rng.normal(0, 0.005, 5))
    lo = _arm(0.60 + seed_effect + rng.normal(0, 0.005, 5))
    same = _arm(0.70 + seed_effect + rng.normal(0, 0.005, 5))
    real = stats.decide(hi, lo, stats.Claim("hi", "lo", (9.0, 11.0), "Table X"))
    assert real.outcome == "agrees" and real.gap.contains(0.10) and real.size == "consistent"
    assert real.gap.n == 5 and real.gap.half_width < 0.02  # paired: the 5-point seed effect cancels
    assert real.p < 0.05 and real.budget == "fixed budget"
    wrong = stats.decide(lo, hi, stats.Claim("lo", "hi", (1.0, 1.0)))
    assert wrong.outcome == "disagrees" and wrong.gap.hi < 0 and wrong.size == "smaller than the paper's"
    null = stats.decide(hi, same, stats.Claim("hi", "same", (1.0, 2.0)))
    assert null.outcome == "inconclusive" and null.gap.lo < 0 < null.gap.hi and null.p > 0.05
    # sign undecided, yet the interval is narrow enough to exclude the paper's 1-2 points
    assert null.size == "smaller than the paper's"
    assert stats.headline([real, null]) == "1 agrees, 1 inconclusive; size vs the paper: 1 consistent, 1 smaller than the paper's"
    assert stats.decide(hi, lo, stats.Claim("hi", "lo"), budget="plateau").budget == "plateau"


def test_verdict_says_when_the_size_differs_from_the_papers():
    """Right sign, wrong size (the committed Fig. 6a: 35 points where the paper shows 1-2)."""
    linear = _arm([0.534, 0.542, 0.530, 0.545, 0.538])
    relu6 = _arm([0.186, 0.189, 0.180, 0.191, 0.188])
    v = stats.decide(linear, relu6, stats.Claim("linear", "relu6", (1.0, 2.0), "Fig. 6a"))
    assert v.outcome == "agrees" and v.size == "larger than the paper's"
    assert stats.decide(linear, relu6, stats.Claim("linear", "relu6", (40.0, 50.0))).size == "smaller than the paper's"
    assert stats.decide(linear, relu6, stats.Claim("linear", "relu6", (30.0, 40.0))).size == "consistent"
    assert stats.decide(linear, relu6, stats.Claim("linear", "relu6")).size == "unknown"
    line = v.line()
    assert "size larger than the paper's" in line and "**agrees**" in line and "+1.0 to +2.0 (Fig. 6a)" in line
    with pytest.raises(ValueError, match="low, high"):
        stats.Claim("a", "b", (2.0, 1.0))


def test_two_seeds_with_a_small_gap_stay_inconclusive():
    """The committed Xception Fig. 10 finals (n = 2): a 2-s.e. rule called +0.45 points 'agrees'; with
    t(1) = 12.7 the interval spans 0."""
    none, elu = _arm([0.995, 0.996]), _arm([0.989, 0.993])
    v = stats.decide(none, elu, stats.Claim("none", "elu"))
    assert v.gap.mean == pytest.approx(0.0045) and v.outcome == "inconclusive"
    assert stats.decide(none, elu, stats.Claim("none", "elu", (0.5, 0.5))).size == "not resolved"  # holds 0 and 0.5
    one = stats.decide(_arm([0.9]), _arm([0.1]), stats.Claim("a", "b", (1.0, 1.0)))
    assert one.outcome == "inconclusive" and one.size == "unknown"  # one seed: no claim
    assert "no interval" in one.line()


def test_verdict_is_decided_once_on_the_declared_metric():
    """Finals tie, the curves differ: the final-accuracy claim stays inconclusive (no retry on the curve);
    a separately declared speed claim is decided on the curve means (GroupStats.by_seed picks them)."""

    def group(name, finals, speeds):
        f, s = np.asarray(finals), np.asarray(speeds)
        return runs.GroupStats(name, np.array([100]), f[:1], f[:1], f[:1], f, tuple(range(5)), s, (-1,) * 5)

    fast = group("fast", [0.99, 0.995, 0.99, 0.993, 0.991], [0.90, 0.91, 0.92, 0.905, 0.915])
    slow = group("slow", [0.99, 0.99, 0.995, 0.992, 0.993], [0.70, 0.72, 0.71, 0.705, 0.715])
    assert fast.by_seed("final") == {0: 0.99, 1: 0.995, 2: 0.99, 3: 0.993, 4: 0.991}
    final = stats.Claim("fast", "slow")
    assert stats.decide(fast.by_seed(final.metric), slow.by_seed(final.metric), final).outcome == "inconclusive"
    claim = stats.Claim("fast", "slow", metric="speed")
    speed = stats.decide(fast.by_seed(claim.metric), slow.by_seed(claim.metric), claim)
    assert speed.outcome == "agrees" and speed.gap.mean == pytest.approx(0.20) and "(speed)" in speed.claim.name
    assert "over the run" in speed.line()
    with pytest.raises(ValueError, match="metric"):
        stats.Claim("a", "b", metric="curve")
    with pytest.raises(ValueError, match="relation"):
        stats.Claim("a", "b", relation="<")


def test_gap_pairs_by_seed_not_by_position():
    a = _arm([0.50, 0.80, 0.60], seeds=(0, 1, 2))
    b = {1: 0.70, 0: 0.40, 2: 0.55, 7: 0.99}  # other order, an extra seed
    np.testing.assert_allclose(stats.paired_differences(a, b), [0.10, 0.10, 0.05])
    v = stats.decide(a, b, stats.Claim("a", "b"))
    assert v.gap.n == 3 and v.gap.mean == pytest.approx(np.mean([0.10, 0.10, 0.05]))
    with pytest.raises(ValueError, match="share no seed"):
        stats.paired_differences(a, {9: 0.5})


# ---------------------------------------------------------------- equality claims (TOST)


def _equality(diffs, margin=1.0, base=0.8):
    """An equality claim a = b ± margin (points) on arms whose per-seed differences are ``diffs``,
    on top of a shared seed effect (pairing removes it)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    seed_effect = np.linspace(-0.05, 0.05, diffs.size)
    b = base + seed_effect
    return stats.decide(_arm(b + diffs), _arm(b), stats.Claim("a", "b", (0.0, 0.0), "no loss", relation="=",
                                                               margin=margin))


def _tost_by_hand(d: np.ndarray, m: float) -> float:
    """The larger of the two one-sided p-values, from the t distribution directly."""
    n = d.size
    se = d.std(ddof=1) / math.sqrt(n)
    p_low = sps.t.sf((d.mean() + m) / se, n - 1)  # H0: mean <= -m
    p_high = sps.t.cdf((d.mean() - m) / se, n - 1)  # H0: mean >= +m
    return float(max(p_low, p_high))


def test_tost_p_is_the_larger_one_sided_p():
    rng = np.random.default_rng(5)
    for mean, sd, m in ((0.0, 0.004, 0.01), (0.006, 0.004, 0.01), (-0.008, 0.01, 0.01), (0.03, 0.01, 0.005)):
        d = rng.normal(mean, sd, 6)
        lower = sps.ttest_1samp(d + m, 0.0, alternative="greater").pvalue  # mean(d) > -m
        upper = sps.ttest_1samp(d - m, 0.0, alternative="less").pvalue  # mean(d) < +m
        assert stats.tost_p(d, m) == pytest.approx(max(lower, upper), rel=1e-9)
        assert stats.tost_p(d, m) == pytest.approx(_tost_by_hand(d, m), rel=1e-9)
    assert stats.tost_p(np.array([0.001]), 0.01) == 1.0  # one seed: no test
    assert stats.tost_p(np.array([0.002, 0.002]), 0.01) == 0.0  # no spread, inside the margin
    assert stats.tost_p(np.array([0.02, 0.02]), 0.01) == 1.0  # no spread, outside it
    # TOST at alpha = 0.05 <=> the 90% t interval lies inside +-margin
    d = np.array([0.001, -0.002, 0.0015, -0.001, 0.0005, 0.003])
    ci90 = stats.mean_ci(d, level=0.90)
    for m in (0.002, 0.003, 0.004, 0.01):
        assert (stats.tost_p(d, m) < 0.05) == (-m < ci90.lo and ci90.hi < m), m


def test_equality_agrees_within_the_margin():
    v = _equality([0.001, -0.002, 0.0015, -0.001, 0.0005])  # |gap| < 0.2 points, margin 1 point
    assert v.outcome == "agrees" and v.p < 0.05 and v.claim.relation == "=" and v.claim.name == "a = b"
    assert v.size == "consistent"  # the paper's 0 is inside the interval
    assert "margin ±1" in v.line() and "**agrees**" in v.line()


def test_equality_disagrees_on_a_gap_well_outside_the_margin():
    for sign in (1, -1):  # a loss is a disagreement whichever its sign
        v = _equality(sign * np.array([0.05, 0.052, 0.048, 0.051, 0.049]))  # 5 points, margin 1
        assert v.outcome == "disagrees" and v.p > 0.5
        assert (v.gap.lo > 0.01) if sign > 0 else (v.gap.hi < -0.01)
        assert v.size == ("larger than the paper's" if sign > 0 else "smaller than the paper's")


def test_equality_is_inconclusive_when_noisy_or_near_the_margin():
    noisy = _equality([0.03, -0.025, 0.02, -0.03, 0.005])  # mean 0, seed spread 2.5 points, margin 1
    assert noisy.outcome == "inconclusive" and noisy.gap.lo < -0.01 and noisy.gap.hi > 0.01
    edge = _equality([0.009, 0.011, 0.010, 0.0095, 0.0105])  # the gap sits on the margin
    assert edge.outcome == "inconclusive" and edge.gap.contains(0.01)
    # the same numbers as an ordering: a 1-point gap, clearly above 0
    d = np.array([0.009, 0.011, 0.010, 0.0095, 0.0105])
    assert stats.decide(_arm(0.8 + d), _arm(np.full(5, 0.8)), stats.Claim("a", "b")).outcome == "agrees"


def test_equality_claims_need_a_positive_margin_and_orderings_none():
    with pytest.raises(ValueError, match="margin"):
        stats.Claim("a", "b", relation="=")
    with pytest.raises(ValueError, match="margin"):
        stats.Claim("a", "b", relation="=", margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        stats.Claim("a", "b", margin=1.0)  # an ordering with a margin
    assert stats.Claim("a", "b", relation="=", margin=0.5).margin == 0.5


# ---------------------------------------------------------------- Holm


def test_holm_by_hand():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.03]) == [0.03] and stats.holm([]) == []
    np.testing.assert_allclose(stats.holm([0.5, 0.6, 0.9]), [1.0, 1.0, 1.0])  # 1.5, 1.2 capped; 0.9 -> 1
    np.testing.assert_allclose(stats.holm([0.02, 0.02]), [0.04, 0.04])  # ties


def test_holm_is_monotone_at_least_p_and_at_most_one():
    rng = np.random.default_rng(3)
    for m in (2, 5, 12):
        p = rng.uniform(0, 0.3, m) ** 2
        adj = np.array(stats.holm(p))
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= 0)  # the ranking of the p-values is kept
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
        assert adj[order[0]] == pytest.approx(min(1.0, m * p[order[0]]))  # the smallest: Bonferroni


def test_with_holm_turns_a_marginal_agreement_inconclusive():
    """One ordering at p ~ 0.04 agrees alone; tested with two more claims its Holm-adjusted p is
    2 x 0.04 (the second smallest of three), so its Holm verdict is inconclusive. A strong claim
    keeps its agreement."""
    marginal = stats.decide(_arm(0.8 + np.array([0.012, 0.003, 0.010, 0.000, 0.008])), _arm([0.8] * 5),
                            stats.Claim("m", "base"))
    assert marginal.outcome == "agrees" and 0.03 < marginal.p < 0.05, marginal.p
    null = stats.decide(_arm([0.80, 0.81, 0.79, 0.80, 0.80]), _arm([0.80, 0.80, 0.80, 0.81, 0.79]),
                        stats.Claim("n", "base"))
    strong = stats.decide(_arm(0.9 + np.array([0.0, 0.001, -0.001, 0.0005, 0.0])), _arm([0.8] * 5),
                          stats.Claim("s", "base"))
    assert null.outcome == "inconclusive" and strong.outcome == "agrees" and strong.p < 1e-6
    out = stats.with_holm([marginal, null, strong])
    assert [v.p_holm for v in out] == pytest.approx(stats.holm([marginal.p, null.p, strong.p]))
    assert out[0].outcome == "agrees" and out[0].holm_outcome == "inconclusive" and out[0].p_holm >= 0.05
    assert "(Holm: inconclusive)" in out[0].line()
    assert out[1].holm_outcome == "inconclusive" and out[2].holm_outcome == "agrees"
    assert "Holm" not in out[2].line()
    alone = stats.with_holm([marginal])[0]  # one claim: no correction
    assert alone.p_holm == pytest.approx(marginal.p) and alone.holm_outcome == "agrees"
    assert stats.with_holm([]) == []


def test_with_holm_on_equality_claims():
    """An equality that TOST only just confirms alone is inconclusive under Holm among several; one
    far outside its margin still disagrees (that needs no p-value)."""
    d = np.array([0.005, -0.002, 0.009, 0.002, 0.008])
    p = stats.tost_p(d, 0.01)
    assert 0.02 < p < 0.05, p  # the smallest of three: Holm multiplies it by 3
    marginal = _equality(d)
    far = _equality([0.05, 0.052, 0.048, 0.051, 0.049])
    other = _equality([0.03, -0.025, 0.02, -0.03, 0.005])
    out = stats.with_holm([marginal, far, other])
    assert [v.outcome for v in out] == ["agrees", "disagrees", "inconclusive"]
    assert [v.holm_outcome for v in out] == ["inconclusive", "disagrees", "inconclusive"]


# ---------------------------------------------------------------- V1 trade-off figure


def _box_distance(box, xy) -> float:
    x0, y0, x1, y1 = box
    return float(np.hypot(max(x0 - xy[0], 0, xy[0] - x1), max(y0 - xy[1], 0, xy[1] - y1)))


def test_tradeoff_labels_sit_on_their_own_points(tmp_path):
    """V1 Figs. 4-5: each joined label is nearer its own marker than any other; the unjoined ablation
    markers (almost on top of each other) get a column of labels in the markers' vertical order that
    never overlap (the earlier placement staggered them in multiply-add order, onto other markers)."""
    points = [plots.TradeoffPoint(f"r{r}", m, a, 0.01, f"width {w}")
              for w, base in ((0.5, 1e7), (0.25, 3e6)) for r, m, a in
              ((56, base, 0.55 if w == 0.5 else 0.50), (32, base / 3, 0.38 if w == 0.5 else 0.30))]
    # Table 4-5 networks: the cheapest is the most accurate, so multiply-add order != height order
    points += [plots.TradeoffPoint("full-conv", 5.9e6, 0.95, 0.02, "ablations"),
               plots.TradeoffPoint("shallow", 5.66e6, 0.9595, 0.004, "ablations"),
               plots.TradeoffPoint("thin", 5.5e6, 0.972, 0.004, "ablations")]
    placed = plots.plot_tradeoff(points, tmp_path / "t.png", title="t", unjoined=["ablations"])
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert [label for label, _, _ in placed] == [p.label for p in points]
    markers = [xy for _, xy, _ in placed]
    for i, (label, xy, box) in enumerate(placed):
        if points[i].series == "ablations":
            continue
        dists = [_box_distance(box, m) for m in markers]
        assert int(np.argmin(dists)) == i, (label, dists)
    ab = [i for i, p in enumerate(points) if p.series == "ablations"]
    by_marker = sorted(ab, key=lambda i: markers[i][1])
    by_label = sorted(ab, key=lambda i: placed[i][2][1])
    assert by_marker == by_label  # leaders do not cross: label order = marker order, bottom to top
    boxes = [placed[i][2] for i in by_label]
    assert all(lo[3] <= hi[1] + 1e-6 for lo, hi in zip(boxes, boxes[1:]))  # no overlap
    assert min(b[0] for b in boxes) > max(markers[i][0] for i in ab)  # the column is right of the markers
    by_params = plots.plot_tradeoff(points, tmp_path / "p.png", title="p", unjoined=["ablations"],
                                    xlabel="parameters (millions, log scale)")
    assert len(by_params) == len(points) and (tmp_path / "p.png").exists()
