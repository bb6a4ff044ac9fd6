"""The experiments' statistics on constructed data where the answer is known: t intervals, the paired
gap, the one verdict rule (a real gap, a null gap, a gap of the wrong sign or size), the plateau
rule, and the placement of the V1 trade-off figure's labels. Pure numpy (and matplotlib), no training."""
from __future__ import annotations

import numpy as np
import pytest

from experiments import common


def _stats(group: str, finals, speeds=None, seeds=None) -> common.GroupStats:
    f = np.asarray(finals, dtype=np.float64)
    one = np.array([f.mean()])
    return common.GroupStats(group, np.array([100]), one, one * 0, one, one, f,
                             tuple(seeds if seeds is not None else range(len(f))),
                             f if speeds is None else np.asarray(speeds, dtype=np.float64))


def test_t_quantiles_and_interval_coverage():
    assert common.t_quantile_975(1) == pytest.approx(12.706) and common.t_quantile_975(4) == pytest.approx(2.776)
    assert common.t_quantile_975(35) == pytest.approx(2.030, abs=2e-3)  # between the tabulated 30 and 40
    assert common.t_quantile_975(10_000) == pytest.approx(1.960, abs=2e-3)
    qs = [common.t_quantile_975(df) for df in range(1, 200)]
    assert all(b <= a for a, b in zip(qs, qs[1:]))
    with pytest.raises(ValueError, match="df"):
        common.t_quantile_975(0)
    # A 95% t interval from 5 normal draws covers the true mean about 95% of the time (a z interval,
    # 1.96 s.e., would cover only ~88%): 4,000 constructed samples.
    rng = np.random.default_rng(0)
    cover = np.mean([common.mean_ci(rng.normal(3.0, 2.0, 5)).contains(3.0) for _ in range(4000)])
    assert 0.935 < cover < 0.965, cover
    assert common.mean_ci([0.5]).half_width == np.inf


def test_verdict_real_gap_null_gap_and_wrong_sign():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.05, 5)  # shared by both arms of a seed: pairing removes it
    hi = _stats("hi", 0.70 + seed_effect + rng.normal(0, 0.005, 5))
    lo = _stats("lo", 0.60 + seed_effect + rng.normal(0, 0.005, 5))
    same = _stats("same", 0.70 + seed_effect + rng.normal(0, 0.005, 5))
    stats = {"hi": hi, "lo": lo, "same": same}
    real = common.decide(stats, common.Claim("hi", "lo", (9.0, 11.0), "Table X"))
    assert real.outcome == "agrees" and real.gap.contains(0.10) and real.size == "consistent"
    assert real.gap.n == 5 and real.gap.half_width < 0.02  # paired: the 5-point seed effect cancels
    assert common.decide(stats, common.Claim("lo", "hi", (1.0, 1.0))).outcome == "disagrees"
    null = common.decide(stats, common.Claim("hi", "same", (1.0, 2.0)))
    assert null.outcome == "inconclusive" and null.gap.lo < 0 < null.gap.hi
    # sign undecided, yet the interval is narrow enough to exclude the paper's 1-2 points
    assert null.size == "smaller than the paper's"
    assert "inconclusive" in common.headline([real, null]) and "1 agrees" in common.headline([real, null])


def test_verdict_says_when_the_size_differs_from_the_papers():
    """Right sign, wrong size (the committed Fig. 6a: 35 points where the paper shows 1-2)."""
    stats = {"linear": _stats("linear", [0.534, 0.542, 0.530, 0.545, 0.538]),
             "relu6": _stats("relu6", [0.186, 0.189, 0.180, 0.191, 0.188])}
    v = common.decide(stats, common.Claim("linear", "relu6", (1.0, 2.0), "Fig. 6a"))
    assert v.outcome == "agrees" and v.size == "larger than the paper's"
    v = common.decide(stats, common.Claim("linear", "relu6", (40.0, 50.0)))
    assert v.size == "smaller than the paper's"
    assert common.decide(stats, common.Claim("linear", "relu6")).size == "unknown"
    assert "size larger than the paper's" in common.decide(stats, common.Claim("linear", "relu6", (1.0, 2.0))).line()


def test_an_equality_claim_never_agrees_and_disagrees_on_a_real_difference():
    """The paper's "no loss" (gap 0): a measured loss is a disagreement, whichever its sign, and an
    interval holding 0 stays inconclusive (with the paper's 0 inside it: size consistent)."""
    rng = np.random.default_rng(2)
    seed_effect = rng.normal(0, 0.05, 5)
    stats = {"full": _stats("full", 0.70 + seed_effect + rng.normal(0, 0.003, 5)),
             "half": _stats("half", 0.68 + seed_effect + rng.normal(0, 0.003, 5)),
             "twin": _stats("twin", 0.70 + seed_effect + rng.normal(0, 0.003, 5))}
    loss = common.decide(stats, common.Claim("full", "half", (0.0, 0.0), "no loss", relation="="))
    assert loss.gap.lo > 0 and loss.outcome == "disagrees" and loss.size == "larger than the paper's"
    assert common.decide(stats, common.Claim("half", "full", (0.0, 0.0), relation="=")).outcome == "disagrees"
    same = common.decide(stats, common.Claim("full", "twin", (0.0, 0.0), relation="="))
    assert same.outcome == "inconclusive" and same.size == "consistent" and same.claim.name == "full = twin"
    as_order = common.decide(stats, common.Claim("full", "half", (0.0, 0.0)))  # the same numbers as an ordering
    assert as_order.outcome == "agrees"
    with pytest.raises(ValueError, match="relation"):
        common.Claim("a", "b", relation="<")


def test_two_seeds_with_a_small_gap_stay_inconclusive():
    """The committed Xception Fig. 10 finals (n = 2): a 2-s.e. rule called +0.45 points 'agrees'; with
    t(1) = 12.7 the interval spans 0."""
    stats = {"none": _stats("none", [0.995, 0.996]), "elu": _stats("elu", [0.989, 0.993])}
    v = common.decide(stats, common.Claim("none", "elu"))
    assert v.gap.mean == pytest.approx(0.0045) and v.outcome == "inconclusive"
    assert common.decide(stats, common.Claim("none", "elu", (0.5, 0.5))).size == "not resolved"  # holds 0 and 0.5
    one = {"a": _stats("a", [0.9]), "b": _stats("b", [0.1])}
    assert common.decide(one, common.Claim("a", "b", (1.0, 1.0))).outcome == "inconclusive"  # one seed: no claim


def test_verdict_is_decided_once_on_the_declared_metric():
    """Finals tie, the curves differ: the final-accuracy claim stays inconclusive (no retry on the curve);
    a separately declared speed claim is decided on the curve means."""
    stats = {"fast": _stats("fast", [0.99, 0.995, 0.99, 0.993, 0.991], speeds=[0.90, 0.91, 0.92, 0.905, 0.915]),
             "slow": _stats("slow", [0.99, 0.99, 0.995, 0.992, 0.993], speeds=[0.70, 0.72, 0.71, 0.705, 0.715])}
    assert common.decide(stats, common.Claim("fast", "slow")).outcome == "inconclusive"
    speed = common.decide(stats, common.Claim("fast", "slow", metric="speed"))
    assert speed.outcome == "agrees" and "(speed)" in speed.claim.name
    with pytest.raises(ValueError, match="metric"):
        common.Claim("a", "b", metric="curve")


def test_gap_pairs_by_seed_not_by_position():
    a = _stats("a", [0.50, 0.80, 0.60], seeds=(0, 1, 2))
    b = _stats("b", [0.70, 0.40, 0.55, 0.99], seeds=(1, 0, 2, 7))  # other order, an extra seed
    g = common.paired_gap(a, b)
    assert g.n == 3 and g.mean == pytest.approx(np.mean([0.10, 0.10, 0.05]))
    with pytest.raises(ValueError, match="share no seed"):
        common.paired_gap(a, _stats("c", [0.5], seeds=(9,)))


def _curve(values, every=50):
    v = np.asarray(values, dtype=np.float64)
    return common.Curve(np.arange(1, len(v) + 1) * every, v)


def test_plateau_rule():
    assert common.plateau_step(_curve([0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9])) is None  # still rising
    flat = [0.2, 0.5, 0.8, 0.95, 0.955, 0.95, 0.958, 0.957]
    assert common.plateau_step(_curve(flat)) == 200  # 0.95 at step 200; the next 3 evals add < 1 point
    assert common.plateau_step(_curve(flat), delta=0.005) == 250  # a stricter δ: 0.95 → 0.955 is not flat
    assert common.plateau_step(_curve([0.2, 0.9, 0.9])) is None  # too few evals after the flat point to tell
    # stuck at chance before it takes off: not flat at the start (the whole curve is judged)
    assert common.plateau_step(_curve([0.1, 0.1, 0.1, 0.1, 0.5, 0.9, 0.9, 0.9, 0.9])) == 300
    noisy = [0.5, 0.9, 0.88, 0.915, 0.89, 0.93, 0.93, 0.93, 0.935]
    assert common.plateau_step(_curve(noisy)) == 300  # each of 0.9, 0.915 is beaten by > 1 point within 3 evals


def _box_distance(box, xy) -> float:
    x0, y0, x1, y1 = box
    return float(np.hypot(max(x0 - xy[0], 0, xy[0] - x1), max(y0 - xy[1], 0, xy[1] - y1)))


def test_tradeoff_labels_sit_on_their_own_points(tmp_path):
    """V1 Figs. 4-5: each joined label is nearer its own marker than any other; the unjoined ablation
    markers (almost on top of each other) get a column of labels in the markers' vertical order that
    never overlap (the earlier placement staggered them in multiply-add order, onto other markers)."""
    points = [common.TradeoffPoint(f"r{r}", m, a, 0.01, f"width {w}")
              for w, base in ((0.5, 1e7), (0.25, 3e6)) for r, m, a in
              ((56, base, 0.55 if w == 0.5 else 0.50), (32, base / 3, 0.38 if w == 0.5 else 0.30))]
    # Table 4-5 networks: the cheapest is the most accurate, so multiply-add order != height order
    points += [common.TradeoffPoint("full-conv", 5.9e6, 0.95, 0.02, "ablations"),
               common.TradeoffPoint("shallow", 5.66e6, 0.9595, 0.004, "ablations"),
               common.TradeoffPoint("thin", 5.5e6, 0.972, 0.004, "ablations")]
    placed = common.plot_tradeoff(points, tmp_path / "t.png", title="t", unjoined=["ablations"])
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
    by_params = common.plot_tradeoff(points, tmp_path / "p.png", title="p", unjoined=["ablations"],
                                     xlabel="parameters (millions, log scale)")
    assert len(by_params) == len(points) and (tmp_path / "p.png").exists()
