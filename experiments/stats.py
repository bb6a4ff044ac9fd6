"""Statistics of the experiments: t intervals over seeds, paired gaps, one verdict per declared
claim, equivalence (two one-sided tests) for the papers' "no difference" claims, and Holm's
correction over an experiment's claims. Quantiles and p-values come from ``scipy.stats``.

Every claim is declared before its runs (:class:`Claim`): which variant the paper says is better,
on which metric, the paper's gap, and for an equality claim the margin within which two variants
count as equal. :func:`decide` is the one verdict rule; :func:`holm` adjusts an experiment's
p-values for the number of claims it tests.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95  # every interval is a two-sided 95% t interval
ALPHA = 1 - LEVEL


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean and its two-sided t interval over ``n`` values (infinite with fewer than two)."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def fmt_level(self, scale: float = 100.0, digits: int = 2) -> str:
        """A level, unsigned: ``"3.46 [2.45, 4.46]"`` (or ``"3.46 (n=1)"``)."""
        if self.n < 2:
            return f"{self.mean * scale:.{digits}f} (n={self.n})"
        return f"{self.mean * scale:.{digits}f} [{self.lo * scale:.{digits}f}, {self.hi * scale:.{digits}f}]"

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """A signed gap: ``"+35.1 [+30.2, +40.0]"`` (or ``"+35.1 [n=1: no interval]"``)."""
        if not math.isfinite(self.half_width):
            return f"{self.mean * scale:+.{digits}f} [n={self.n}: no interval]"
        return f"{self.mean * scale:+.{digits}f} [{self.lo * scale:+.{digits}f}, {self.hi * scale:+.{digits}f}]"


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (at least two values), got df={df}")
    return float(sps.t.ppf(0.5 + level / 2, df))


def mean_ci(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of ``values`` with its t interval, mean ± t(n−1)·s/√n."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if v.size < 2:
        return Interval(m, -math.inf, math.inf, int(v.size))
    half = t_quantile(v.size - 1, level) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(m, m - half, m + half, int(v.size))


def binomial_se(accuracy: float, num_eval: int) -> float:
    """Standard error of an accuracy measured on ``num_eval`` independent eval images, √(p(1−p)/N)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / num_eval)


def paired_differences(a: Mapping[int, float], b: Mapping[int, float]) -> np.ndarray:
    """``a[s] − b[s]`` for every seed ``s`` both ran (the same seed: the same data and order)."""
    seeds = [s for s in a if s in b]
    if not seeds:
        raise ValueError("the two variants share no seed: nothing to pair")
    return np.array([float(a[s]) - float(b[s]) for s in seeds], dtype=np.float64)


def t_test_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of the paired t test that the mean difference is 0 (1 with n < 2)."""
    if diffs.size < 2:
        return 1.0
    if np.ptp(diffs) <= 1e-12 * max(1.0, float(np.abs(diffs).max())):  # no spread: a t test is undefined
        return 0.0 if diffs[0] != 0 else 1.0
    return float(sps.ttest_1samp(diffs, 0.0).pvalue)


def tost_p(diffs: np.ndarray, margin: float) -> float:
    """Two one-sided tests (Schuirmann) of equivalence within ±``margin``: the larger of the p-values
    of H0: mean <= −margin and H0: mean >= +margin. p < α confirms the two are equal to within the
    margin (equivalently, the 1 − 2α interval lies inside ±margin)."""
    if diffs.size < 2:
        return 1.0
    if np.ptp(diffs) <= 1e-12 * max(1.0, float(np.abs(diffs).max())):
        return 0.0 if abs(diffs[0]) < margin else 1.0
    lower = sps.ttest_1samp(diffs, -margin, alternative="greater").pvalue
    upper = sps.ttest_1samp(diffs, margin, alternative="less").pvalue
    return float(max(lower, upper))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate):
    the i-th smallest p times (m − i), made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


@dataclasses.dataclass(frozen=True)
class Claim:
    """One statement of a paper, declared before the runs.

    ``relation=">"``: ``better`` beats ``worse``. ``relation="="``: the paper says the two are the same
    ("no loss", "near identical"); ``margin`` (points, required) is the difference that still counts
    as equal, tested with two one-sided tests. ``metric``: ``"final"`` (the held-out accuracy at the
    end of the run) or ``"speed"`` (the mean of the validation curve over a fixed budget: how fast it
    learned, a separate claim where the paper makes one). ``paper_gap``: the paper's better − worse in
    points as (low, high), or None; ``source`` names its table, figure or section.
    """

    better: str
    worse: str
    paper_gap: tuple[float, float] | None = None
    source: str = ""
    metric: str = "final"
    quantity: str = "accuracy"  # what the points are points of (e.g. "COCO AP" for a detector)
    relation: str = ">"
    margin: float | None = None  # "=" claims: the equivalence margin, in points
    paired_by: str = "seed"  # what one paired sample is (a seed's runs; a timing session)
    unit: str = ""  # what the gap's points are, where "pts of final <quantity>" would mislead

    def __post_init__(self) -> None:
        if self.metric not in ("final", "speed"):
            raise ValueError(f"Claim.metric must be 'final' or 'speed', got {self.metric!r}")
        if self.relation not in (">", "="):
            raise ValueError(f"Claim.relation must be '>' or '=', got {self.relation!r}")
        if self.relation == "=" and (self.margin is None or not self.margin > 0):
            raise ValueError(f"the equality claim {self.better} = {self.worse} needs a declared margin > 0 (points)")
        if self.relation == ">" and self.margin is not None:
            raise ValueError(f"Claim.margin is for equality claims; {self.better} > {self.worse} is an ordering")
        if self.paper_gap is not None and self.paper_gap[0] > self.paper_gap[1]:
            raise ValueError(f"Claim.paper_gap must be (low, high), got {self.paper_gap}")

    @property
    def name(self) -> str:
        return f"{self.better} {self.relation} {self.worse}" + (" (speed)" if self.metric == "speed" else "")

    def paper_text(self) -> str:
        if self.paper_gap is None:
            return "no number" + (f" ({self.source})" if self.source else "")
        lo, hi = self.paper_gap
        value = f"{lo:+.1f}" if lo == hi else f"{lo:+.1f} to {hi:+.1f}"
        return value + (f" ({self.source})" if self.source else "")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one :class:`Claim` on its paired per-seed differences.

    ``outcome``: an ordering **agrees** when the whole 95% interval of the gap is above 0, **disagrees**
    when wholly below, else **inconclusive**; an equality **agrees** when TOST confirms |gap| < margin
    (the 90% interval inside ±margin), **disagrees** when the 95% interval lies wholly outside ±margin,
    else inconclusive. ``holm_outcome``: the same decision at the Holm-adjusted p-value ``p_holm``
    (the experiment's claims as one family). ``size``: the interval against the paper's gap.
    ``budget``: "plateau" when every run of both variants stopped at its plateau, else "fixed budget"
    ("" where nothing was trained, e.g. a latency claim).
    """

    claim: Claim
    gap: Interval  # better − worse, fraction (×100 for points)
    outcome: str
    size: str
    p: float
    p_holm: float = math.nan
    holm_outcome: str = ""
    budget: str = "fixed budget"

    def line(self) -> str:
        c = self.claim
        unit = c.unit or (f"pts of final {c.quantity}" if c.metric == "final" else f"pts of mean {c.quantity} over the run")
        margin = f", margin ±{c.margin:g}" if c.relation == "=" else ""
        budget = f"; {self.budget}" if self.budget else ""
        text = (f"{c.name}: gap {self.gap.fmt()} {unit} (paired by {c.paired_by}, 95% t interval, n={self.gap.n}"
                f"{margin}{budget}) → **{self.outcome}**")
        if self.holm_outcome and self.holm_outcome != self.outcome:
            text += f" (Holm: {self.holm_outcome})"
        if c.paper_gap is not None:
            text += f"; paper's gap {c.paper_text()}: size {self.size}"
        else:
            text += f"; {c.paper_text()}"
        return text + "."


def _outcome(claim: Claim, gap: Interval, diffs: np.ndarray, p: float, alpha: float = ALPHA) -> str:
    if not math.isfinite(gap.half_width):
        return "inconclusive"
    if claim.relation == "=":
        m = claim.margin / 100.0
        if p < alpha:
            return "agrees"
        return "disagrees" if (gap.lo > m or gap.hi < -m) else "inconclusive"
    if p < alpha:
        return "agrees" if gap.mean > 0 else "disagrees"
    return "inconclusive"


def decide(a: Mapping[int, float], b: Mapping[int, float], claim: Claim, budget: str = "fixed budget") -> Verdict:
    """The one verdict rule, on the per-seed values of ``claim.better`` (``a``) and ``claim.worse``
    (``b``) for the claim's declared metric, decided once (no second try on another metric)."""
    diffs = paired_differences(a, b)
    gap = mean_ci(diffs)
    p = tost_p(diffs, claim.margin / 100.0) if claim.relation == "=" else t_test_p(diffs)
    outcome = _outcome(claim, gap, diffs, p)
    if claim.paper_gap is None or not math.isfinite(gap.half_width):
        size = "unknown"
    else:
        lo, hi = (x / 100.0 for x in claim.paper_gap)
        size = ("larger than the paper's" if gap.lo > hi else "smaller than the paper's" if gap.hi < lo
                else "consistent" if (gap.lo > 0 or gap.hi < 0 or claim.relation == "=") else "not resolved")
    return Verdict(claim, gap, outcome, size, p, budget=budget)


def with_holm(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts of one experiment with Holm-adjusted p-values and the outcomes they give."""
    adjusted = holm([v.p for v in verdicts]) if verdicts else []
    out = []
    for v, p_adj in zip(verdicts, adjusted):
        if v.claim.relation == "=":
            m = v.claim.margin / 100.0
            holm_outcome = ("agrees" if p_adj < ALPHA else "disagrees" if (v.gap.lo > m or v.gap.hi < -m)
                            else "inconclusive")
        else:
            holm_outcome = ("agrees" if v.gap.mean > 0 else "disagrees") if p_adj < ALPHA else "inconclusive"
        if not math.isfinite(v.gap.half_width):
            holm_outcome = "inconclusive"
        out.append(dataclasses.replace(v, p_holm=p_adj, holm_outcome=holm_outcome))
    return out


def headline(verdicts: Sequence[Verdict]) -> str:
    """One line for a set of verdicts, counting outcomes: e.g. ``"1 agrees, 2 inconclusive; size vs
    the paper: 1 larger than the paper's"``."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in ("agrees", "disagrees", "inconclusive")}
    head = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    sizes = [v.size for v in verdicts if v.size != "unknown"]
    if sizes:
        head += "; size vs the paper: " + ", ".join(f"{sizes.count(s)} {s}" for s in dict.fromkeys(sizes))
    return head
