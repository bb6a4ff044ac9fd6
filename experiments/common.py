"""Shared experiment framework: output dirs, resumable sweeps, curve aggregation, paper-style plots, reports.

Every experiment writes under ``results/<experiment>/``:

* ``runs/<run_id>/`` — the workdir handed to the trainer; ``final.json`` is written last, atomically,
  and marks the run finished (an interrupted sweep skips those runs when restarted);
* ``curves.csv`` (every run's eval curve, long format), ``summary.csv`` (mean and spread per variant);
* PNG figures and ``report.md`` (table, figure, the paper's claim, whether this run supports it).

The trainer is reached only through ``run_fn(config, workdir) -> dict``; its metrics are read back from
``workdir/metrics.jsonl`` by :func:`read_metrics_jsonl`, the one place that knows that format.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = REPO_ROOT / "results"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")

# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def experiment_path(name: str, root: str | Path | None = None) -> Path:
    """``<root>/<name>`` (root defaults to the repository's ``results/``; a bucket URI works
    too, see mobilenet_jax/paths.py), not created."""
    return paths.resolve(root if root is not None else RESULTS_ROOT, "--out") / name


def experiment_dir(name: str, root: str | Path | None = None) -> Path:
    """:func:`experiment_path`, created if missing and proven writable."""
    return paths.writable_dir(experiment_path(name, root), "--out")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from configs (ml_collections, dataclasses), numpy/jax arrays, paths, tuples."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ml_collections.ConfigDict
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):  # pathlib and epath (bucket URIs keep their scheme)
        return os.fspath(obj)
    if hasattr(obj, "__array__"):  # numpy / jax arrays
        return to_jsonable(np.asarray(obj).tolist())
    return repr(obj)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename), so a crash never leaves half a file."""
    path = paths.resolve(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(paths.resolve(path).read_text())


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows; columns are the union of keys in first-seen order. Floats keep full precision."""
    path = paths.resolve(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: to_jsonable(v) for k, v in row.items()})
    path.write_text(text.getvalue())
    return path


def read_csv(path: str | Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(paths.resolve(path).read_text(), newline="")))


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Curve:
    """One run's metric against training step (sorted by step, one value per step)."""

    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.steps.shape != self.values.shape or self.steps.ndim != 1:
            raise ValueError(f"Curve needs 1-D steps and values of one shape, got {self.steps.shape} and {self.values.shape}")

    @property
    def final(self) -> float:
        if self.steps.size == 0:
            raise ValueError("empty curve has no final value")
        return float(self.values[-1])


def read_metrics_jsonl(path: str | Path, metric: str = "eval_accuracy") -> Curve:
    """Parse the trainer's metrics log (mobilenet_jax/train/metrics.py): one JSON object a line.

    Each line has ``"step"``. Two layouts are read: the trainer's ``{"step", "split": "eval",
    "accuracy", ...}``, where ``metric="eval_accuracy"`` means split ``eval``, key ``accuracy``; and
    flat lines carrying ``metric`` itself. Lines without the metric (train lines) are skipped. A step
    logged twice (a run resumed from a checkpoint) keeps its last value. This is the only function
    that knows the log format.
    """
    path = paths.resolve(path)
    split, _, key = metric.partition("_")
    by_step: dict[int, float] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON line ({e.msg})") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}:{lineno}: expected a JSON object with a 'step' key")
        if "split" in record:
            value = record.get(key) if record["split"] == split else None
        else:
            value = record.get(metric)
        if value is not None:
            by_step[int(record["step"])] = float(value)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return Curve(steps=steps, values=np.array([by_step[s] for s in steps], dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Sweeps
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: ``group`` is the variant (a curve in the figure), ``seed`` its repeat."""

    run_id: str
    group: str
    seed: int
    config: Any


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_id: str
    group: str
    seed: int
    summary: dict[str, Any]
    curve: Curve
    wall_s: float
    resumed: bool  # True when read back from an earlier finished run


RunFn = Callable[[Any, Path], Mapping[str, Any]]


def set_config_seed(config: Any, seed: int) -> Any:
    """A deep copy of ``config`` with ``seed`` set (dict item or attribute, e.g. ml_collections.ConfigDict)."""
    config = copy.deepcopy(config)
    if isinstance(config, dict):
        config["seed"] = seed
    else:
        setattr(config, "seed", seed)
    return config


def with_seeds(
    variants: Mapping[str, Any],
    seeds: Sequence[int],
    set_seed: Callable[[Any, int], Any] = set_config_seed,
) -> list[RunSpec]:
    """Cross variants with seeds: run ids ``<variant>-s<seed>``, in seed-major order (every variant's
    first seed, then every variant's second, ...), so a sweep stopped early still pairs every variant."""
    if not seeds:
        raise ValueError("need at least one seed")
    return [
        RunSpec(run_id=f"{name}-s{seed}", group=name, seed=int(seed), config=set_seed(config, int(seed)))
        for seed in seeds
        for name, config in variants.items()
    ]


def _result_from_final(final: Mapping[str, Any], resumed: bool) -> RunResult:
    curve = final["curve"]
    return RunResult(
        run_id=final["run_id"],
        group=final["group"],
        seed=int(final["seed"]),
        summary=dict(final["summary"]),
        curve=Curve(np.asarray(curve["step"], dtype=np.int64), np.asarray(curve["value"], dtype=np.float64)),
        wall_s=float(final["wall_s"]),
        resumed=resumed,
    )


def _dotted(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (a JSON config, for naming the key that differs)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _dotted(sub, f"{prefix}.{key}" if prefix else str(key)).items()}


def _check_same_config(stored: Any, config: Any, final_path: Path) -> None:
    """A finished run is reused only for the config it was run with (else its numbers would lie)."""
    current = json.loads(json.dumps(to_jsonable(config)))
    if stored is None or stored == current:
        return
    a, b = _dotted(stored), _dotted(current)
    key = next(k for k in sorted(set(a) | set(b)) if a.get(k, "<missing>") != b.get(k, "<missing>"))
    raise ValueError(
        f"{final_path} was run with {key}={a.get(key, '<missing>')!r}, this sweep asks for "
        f"{b.get(key, '<missing>')!r}: pass --rerun to train it again, or --out for a fresh results directory")


def load_runs(exp_dir: str | Path) -> list[RunResult]:
    """Every finished run under ``exp_dir/runs/`` (those with a ``final.json``), sorted by run id: a
    report can be rebuilt from them without training."""
    finals = sorted((Path(exp_dir) / "runs").glob("*/final.json"))
    if not finals:
        raise UserError(f"no finished run (runs/<id>/final.json) under {exp_dir}: nothing to rebuild the report "
                        "from; run the experiment without --from-runs (or pass the --out it used)")
    return [_result_from_final(read_json(f), resumed=True) for f in finals]


def run_sweep(
    specs: Sequence[RunSpec],
    run_fn: RunFn,
    exp_dir: str | Path,
    *,
    metric: str = "eval_accuracy",
    metrics_file: str = "metrics.jsonl",
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Run every spec through ``run_fn(config, workdir)``, skipping runs whose ``final.json`` exists.

    ``workdir`` is ``exp_dir/runs/<run_id>``; the run's curve is read from ``workdir/<metrics_file>``.
    ``final.json`` (config, run_fn's summary, the curve, wall time) is written only after ``run_fn``
    returns, so an interrupted run is started again (the trainer may resume it from its checkpoints).
    ``rerun=True`` ignores finished runs and overwrites them.
    """
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate run ids in sweep: {sorted({i for i in ids if ids.count(i) > 1})}")
    for run_id in ids:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} must match {_RUN_ID.pattern} (it names a directory)")
    exp_dir = paths.resolve(exp_dir, "--out")
    results = []
    for i, spec in enumerate(specs, start=1):
        workdir = exp_dir / "runs" / spec.run_id
        final_path = workdir / "final.json"
        if final_path.exists() and not rerun:
            final = read_json(final_path)
            _check_same_config(final.get("config"), spec.config, final_path)
            log(f"[{i}/{len(specs)}] {spec.run_id}: finished earlier, skipped")
            results.append(_result_from_final(final, resumed=True))
            continue
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"[{i}/{len(specs)}] {spec.run_id}: running")
        start = time.perf_counter()
        summary = run_fn(spec.config, workdir)
        wall_s = time.perf_counter() - start
        if not isinstance(summary, Mapping):
            raise TypeError(f"run_fn must return a dict of final metrics, got {type(summary).__name__} for {spec.run_id}")
        metrics_path = workdir / metrics_file
        if not metrics_path.exists():
            raise FileNotFoundError(f"run {spec.run_id}: run_fn wrote no {metrics_file} in {workdir}")
        curve = read_metrics_jsonl(metrics_path, metric)
        if curve.steps.size == 0:
            raise ValueError(f"run {spec.run_id}: {metrics_path} has no line with {metric!r}")
        final = {
            "run_id": spec.run_id,
            "group": spec.group,
            "seed": spec.seed,
            "metric": metric,
            "config": spec.config,
            "summary": summary,
            "curve": {"step": curve.steps, "value": curve.values},
            "wall_s": wall_s,
        }
        write_json(final_path, final)
        log(f"[{i}/{len(specs)}] {spec.run_id}: {metric} {curve.final:.4f} at step {int(curve.steps[-1])} ({wall_s:.1f} s)")
        results.append(_result_from_final(read_json(final_path), resumed=False))
    return results


# ----------------------------------------------------------------------------------------------
# Aggregation over seeds
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """Mean and spread of one variant's curve over its seeds, on the steps every seed logged."""

    group: str
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # sample std (ddof=1); 0 with one seed
    lo: np.ndarray  # min over seeds
    hi: np.ndarray  # max over seeds
    finals: np.ndarray  # each seed's value at the last common step
    seeds: tuple[int, ...]
    # each seed's mean over the common steps: the area under its learning curve, i.e. how fast it
    # converged (Xception Figs. 9-10 are about speed as much as the end point)
    speeds: np.ndarray

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def final_mean(self) -> float:
        return float(self.finals.mean())

    @property
    def final_std(self) -> float:
        return float(self.finals.std(ddof=1)) if self.n > 1 else 0.0


def aggregate(results: Sequence[RunResult], groups: Sequence[str] | None = None) -> dict[str, GroupStats]:
    """Group runs by variant and average their curves over seeds (order: ``groups`` or first seen)."""
    order = list(groups) if groups is not None else list(dict.fromkeys(r.group for r in results))
    stats = {}
    for group in order:
        runs = [r for r in results if r.group == group]
        if not runs:
            raise ValueError(f"no runs for group {group!r}")
        common = set(runs[0].curve.steps.tolist())
        for r in runs[1:]:
            common &= set(r.curve.steps.tolist())
        if not common:
            raise ValueError(f"group {group!r}: the seeds' curves share no evaluation step")
        steps = np.array(sorted(common), dtype=np.int64)
        values = np.stack([r.curve.values[np.isin(r.curve.steps, steps)] for r in runs])  # (seeds, steps)
        stats[group] = GroupStats(
            group=group,
            steps=steps,
            mean=values.mean(0),
            std=values.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(steps)),
            lo=values.min(0),
            hi=values.max(0),
            finals=values[:, -1],
            seeds=tuple(r.seed for r in runs),
            speeds=values.mean(1),
        )
    return stats


# ----------------------------------------------------------------------------------------------
# Statistics: t intervals over seeds, paired gaps, one verdict per declared claim
# ----------------------------------------------------------------------------------------------

# Two-sided 95% quantiles of Student's t, t_{0.975}(df), from the standard tables; between the
# tabulated df, interpolated linearly in 1/df (exact to 0.001 at every df >= 30).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
_Z975 = 1.960


def t_quantile_975(df: int) -> float:
    """t_{0.975}(df): the multiplier of the standard error in a two-sided 95% t interval."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (at least two values), got df={df}")
    if df in _T975:
        return _T975[df]
    known = sorted(_T975)
    if df > known[-1]:
        lo_df, lo_t, hi_inv, hi_t = known[-1], _T975[known[-1]], 0.0, _Z975
    else:
        lo_df = max(k for k in known if k < df)
        hi_df = min(k for k in known if k > df)
        lo_t, hi_inv, hi_t = _T975[lo_df], 1.0 / hi_df, _T975[hi_df]
    frac = (1.0 / lo_df - 1.0 / df) / (1.0 / lo_df - hi_inv)
    return lo_t + frac * (hi_t - lo_t)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean and its two-sided 95% t interval over ``n`` values (infinite with fewer than two)."""

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
        """``"+35.1 [30.2, 40.0]"`` (or ``"+35.1 [n=1: no interval]"``)."""
        if not math.isfinite(self.half_width):
            return f"{self.mean * scale:+.{digits}f} [n={self.n}: no interval]"
        return f"{self.mean * scale:+.{digits}f} [{self.lo * scale:+.{digits}f}, {self.hi * scale:+.{digits}f}]"


def mean_ci(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean of ``values`` with its 95% t interval, mean ± t_{0.975}(n−1)·s/√n."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if v.size < 2:
        return Interval(m, -math.inf, math.inf, int(v.size))
    half = t_quantile_975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(m, m - half, m + half, int(v.size))


def paired_gap(a: GroupStats, b: GroupStats, *, metric: str = "final") -> Interval:
    """``a − b`` paired by seed (the same seed draws the same data order for both variants), with the t
    interval of the per-seed differences. ``metric`` is ``"final"`` (eval accuracy at the last common
    step) or ``"speed"`` (each run's mean over its eval curve: how fast it learned). Seeds that only one
    variant ran are left out; fewer than two shared seeds give an infinite interval."""
    if metric not in ("final", "speed"):
        raise ValueError(f"metric must be 'final' or 'speed', got {metric!r}")
    va, vb = (a.finals, b.finals) if metric == "final" else (a.speeds, b.speeds)
    by_seed_b = dict(zip(b.seeds, vb))
    diffs = [float(x) - float(by_seed_b[s]) for s, x in zip(a.seeds, va) if s in by_seed_b]
    if not diffs:
        raise ValueError(f"{a.group} and {b.group} share no seed: nothing to pair")
    return mean_ci(diffs)


def binomial_se(accuracy: float, num_eval: int) -> float:
    """Standard error of an accuracy measured on ``num_eval`` independent eval images, √(p(1−p)/N)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / num_eval)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One ordering a paper states, declared before the run: ``better`` beats ``worse`` on ``metric``.

    ``metric``: ``"final"`` (final eval accuracy, the default and the claim the verdict is about) or
    ``"speed"`` (mean of the eval curve, a separately named claim about convergence speed where the
    paper makes one). ``paper_gap``: the paper's better − worse in accuracy points as a (low, high)
    range (equal ends for a table's number), or None where the paper gives no number; ``source`` says
    where it comes from (table, or figure read by eye).
    """

    better: str
    worse: str
    paper_gap: tuple[float, float] | None = None
    source: str = ""
    metric: str = "final"
    quantity: str = "accuracy"  # what the points are points of (e.g. "COCO AP" for a detector)
    # ">": the paper orders the two; "=": the paper says they are the same (its gap ~0: "no loss",
    # "near identical"). An equality claim is never "agrees" (an interval cannot show that there is
    # no difference without a margin declared for it): disagrees when its interval excludes 0.
    relation: str = ">"

    def __post_init__(self) -> None:
        if self.metric not in ("final", "speed"):
            raise ValueError(f"Claim.metric must be 'final' or 'speed', got {self.metric!r}")
        if self.relation not in (">", "="):
            raise ValueError(f"Claim.relation must be '>' or '=', got {self.relation!r}")
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
    """The outcome of one :class:`Claim`: ``outcome`` is decided by the sign of the whole 95% interval of
    the paired gap (agrees / disagrees / inconclusive); ``size`` compares the interval with the paper's
    gap: consistent (the paper's range overlaps an interval that excludes 0), larger / smaller (the
    interval lies wholly above / below it), not resolved (the interval holds both 0 and the paper's gap:
    it cannot tell them apart), unknown (no paper number or no interval)."""

    claim: Claim
    gap: Interval  # better − worse, fraction (×100 for points)
    outcome: str
    size: str

    def line(self) -> str:
        c = self.claim
        unit = f"pts of final {c.quantity}" if c.metric == "final" else f"pts of mean {c.quantity} over the run"
        text = (f"{c.name}: gap {self.gap.fmt()} {unit} (paired by seed, 95% t interval, n={self.gap.n}) → "
                f"**{self.outcome}**")
        if c.paper_gap is not None:
            text += f"; paper's gap {c.paper_text()}: size {self.size}"
        else:
            text += f"; {c.paper_text()}"
        return text + "."


def decide(stats: Mapping[str, GroupStats], claim: Claim) -> Verdict:
    """The one verdict rule. Decided once, on the claim's declared metric: agrees when the whole 95%
    interval of the paired gap is above 0, disagrees when it is below 0, inconclusive otherwise (or with
    fewer than two paired seeds). An equality claim ("="): disagrees when the interval excludes 0,
    inconclusive otherwise, and its size is consistent when the interval holds the paper's gap. No
    second try on another metric."""
    g = paired_gap(stats[claim.better], stats[claim.worse], metric=claim.metric)
    if not math.isfinite(g.half_width):
        outcome = "inconclusive"
    elif claim.relation == "=":
        outcome = "disagrees" if (g.lo > 0 or g.hi < 0) else "inconclusive"
    else:
        outcome = "agrees" if g.lo > 0 else "disagrees" if g.hi < 0 else "inconclusive"
    if claim.paper_gap is None or not math.isfinite(g.half_width):
        size = "unknown"
    else:
        lo, hi = (x / 100.0 for x in claim.paper_gap)
        size = ("larger than the paper's" if g.lo > hi else "smaller than the paper's" if g.hi < lo
                else "consistent" if outcome != "inconclusive" or claim.relation == "=" else "not resolved")
    return Verdict(claim, g, outcome, size)


def headline(verdicts: Sequence[Verdict]) -> str:
    """One line for a set of verdicts, counting outcomes (never stronger than the weakest interval
    allows): e.g. ``"1 agrees, 2 inconclusive; size: 1 larger than the paper's"``."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in ("agrees", "disagrees", "inconclusive")}
    head = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    sizes = [v.size for v in verdicts if v.size != "unknown"]
    if sizes:
        head += "; size vs the paper: " + ", ".join(f"{sizes.count(s)} {s}" for s in dict.fromkeys(sizes))
    return head


# ----------------------------------------------------------------------------------------------
# Plateau: has a run stopped improving?
# ----------------------------------------------------------------------------------------------

PLATEAU_EVALS = 3  # k: evals after the plateau point that must not improve on it
PLATEAU_DELTA = 0.01  # δ: an improvement below 1 point of accuracy counts as flat


def plateau_step(curve: Curve, k: int = PLATEAU_EVALS, delta: float = PLATEAU_DELTA) -> int | None:
    """The first eval step s_i after which no later eval improves on the best value so far by ``delta``
    or more (max(v[i+1..]) − max(v[0..i]) < δ), with at least ``k`` evals after it: the run had
    plateaued at s_i. None when there is no such step (still rising at the end, or too few evals after
    the flat point to tell). Judged on the whole curve, so a run stuck at chance before it takes off is
    not called flat. Under a decaying learning rate a flat tail can also mean the rate ran out; the
    report says which schedule ran."""
    v = np.asarray(curve.values, dtype=np.float64)
    best = np.maximum.accumulate(v)
    later_best = np.maximum.accumulate(v[::-1])[::-1]  # later_best[j] = max(v[j..])
    for i in range(len(v) - k):
        if later_best[i + 1] - best[i] < delta:
            return int(curve.steps[i])
    return None


def curves_rows(results: Sequence[RunResult], metric: str = "eval_accuracy") -> list[dict[str, Any]]:
    """Every run's curve in long format, for ``curves.csv``."""
    return [
        {"run_id": r.run_id, "group": r.group, "seed": r.seed, "step": int(s), metric: float(v)}
        for r in results
        for s, v in zip(r.curve.steps, r.curve.values)
    ]


def summary_rows(stats: Mapping[str, GroupStats], metric: str = "eval_accuracy") -> list[dict[str, Any]]:
    """One row per variant: final mean, std, min, max over seeds, for ``summary.csv``."""
    return [
        {
            "group": s.group,
            "seeds": " ".join(map(str, s.seeds)),
            "final_step": int(s.steps[-1]),
            f"{metric}_mean": s.final_mean,
            f"{metric}_std": s.final_std,
            f"{metric}_min": float(s.finals.min()),
            f"{metric}_max": float(s.finals.max()),
        }
        for s in stats.values()
    ]


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed as given (format them first)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, table has {len(headers)} columns")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt_mean_std(mean: float, std: float, n: int, *, scale: float = 100.0, digits: int = 2) -> str:
    """``"71.20 ± 0.30 (n=3)"`` — the form every results table uses."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


def write_report(
    exp_dir: str | Path,
    *,
    title: str,
    paper_claim: str,
    outcome: str,
    command: str,
    figures: Sequence[tuple[str, str]] = (),
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``exp_dir/report.md``: title, the paper's claim, this run's outcome, the command, figures, sections.

    ``figures`` are (caption, file name relative to exp_dir); ``sections`` are (heading, markdown body).
    """
    exp_dir = paths.resolve(exp_dir, "--out")
    for _, name in figures:
        if not (exp_dir / name).exists():
            raise FileNotFoundError(f"report figure {exp_dir / name} does not exist")
    parts = [
        f"# {title}",
        f"**The paper's claim.** {paper_claim.strip()}",
        f"**This run.** {outcome.strip()}",
        f"**Reproduce.** `{command}`",
    ]
    parts += [f"![{caption}]({name})\n\n*{caption}*" for caption, name in figures]
    parts += [f"## {heading}\n\n{body.strip()}" for heading, body in sections]
    path = exp_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# Plots in the papers' style
# ----------------------------------------------------------------------------------------------

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})
    return plt


def plot_curves(
    stats: Mapping[str, GroupStats],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    xlabel: str = "training step",
    scale: float = 100.0,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Accuracy against training step, one line per variant (mean over seeds) with a min–max band (V2 Fig. 6 style)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for i, (name, s) in enumerate(stats.items()):
        color = PALETTE[i % len(PALETTE)]
        label = (labels or {}).get(name, name) + f"  ({fmt_mean_std(s.final_mean, s.final_std, s.n, scale=scale, digits=1)})"
        ax.plot(s.steps, s.mean * scale, color=color, lw=1.8, label=label)
        if s.n > 1:
            ax.fill_between(s.steps, s.lo * scale, s.hi * scale, color=color, alpha=0.18, lw=0)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    # Below the axes: never over a curve, however many variants.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), title="mean over seeds, band = min–max",
              title_fontsize=8, frameon=False)
    save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return paths.resolve(path)


@dataclasses.dataclass(frozen=True)
class TradeoffPoint:
    """One model in an accuracy-vs-cost plot (V1 Figs. 4-5): ``series`` joins points (e.g. one width)."""

    label: str
    madds: float  # multiply-adds, absolute
    mean: float
    std: float
    series: str


def plot_tradeoff(
    points: Sequence[TradeoffPoint],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    xlabel: str = "multiply-adds (millions, log scale)",
    scale: float = 100.0,
    unjoined: Sequence[str] = (),
) -> list[tuple[str, tuple[float, float], tuple[float, float, float, float]]]:
    """Accuracy against cost (``TradeoffPoint.madds``: multiply-adds for V1 Fig. 4, parameters for Fig. 5)
    on a log x axis, error bars = seed std, one marker/colour per series; a series in ``unjoined``
    (unrelated networks) gets markers without a line.

    Labels: a joined series' label sits just right of its own marker, vertically centred on it. The
    unjoined markers often sit almost on top of each other, so their labels go in a column to the
    right, in the markers' vertical order and never overlapping, each with a leader line to its own
    marker. Returns, per point in input order, (label, marker position, label box (x0, y0, x1, y1)),
    both in display pixels, for checking the placement."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    series = list(dict.fromkeys(p.series for p in points))
    for i, name in enumerate(series):
        pts = sorted((p for p in points if p.series == name), key=lambda p: p.madds)
        ax.errorbar(
            [p.madds / 1e6 for p in pts], [p.mean * scale for p in pts], yerr=[p.std * scale for p in pts],
            fmt="s" if name in unjoined else "o-", ms=5, lw=1, capsize=3, color=PALETTE[i % len(PALETTE)], label=name,
        )
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.canvas.draw()  # fixes the limits, so data -> display positions are final
    px_per_pt = fig.dpi / 72.0
    display = [ax.transData.transform((p.madds / 1e6, p.mean * scale)) for p in points]
    texts: list[Any] = [None] * len(points)
    for i, p in enumerate(points):
        if p.series not in unjoined:
            texts[i] = ax.annotate(p.label, (p.madds / 1e6, p.mean * scale), textcoords="offset points",
                                   xytext=(5, 0), va="center", fontsize=7)
    for name in unjoined:
        members = sorted((i for i, p in enumerate(points) if p.series == name), key=lambda i: display[i][1])
        if not members:
            continue
        column_x = max(display[i][0] for i in members) + 18 * px_per_pt
        line_h, last_y = 10 * px_per_pt, -math.inf
        for i in members:  # bottom to top: each label at its marker's height, or just above the previous one
            y = max(display[i][1], last_y + line_h)
            last_y = y
            p = points[i]
            texts[i] = ax.annotate(
                p.label, (p.madds / 1e6, p.mean * scale), textcoords="offset points",
                xytext=((column_x - display[i][0]) / px_per_pt, (y - display[i][1]) / px_per_pt), va="center",
                fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.4", "shrinkA": 0, "shrinkB": 3})
    save_figure(fig, path, bbox_inches="tight")
    from matplotlib.text import Text

    fig.canvas.draw()  # back at the figure's own dpi: markers and labels in the same pixels
    renderer = fig.canvas.get_renderer()
    display = [ax.transData.transform((p.madds / 1e6, p.mean * scale)) for p in points]
    placed = []
    for p, xy, text in zip(points, display, texts):
        box = Text.get_window_extent(text, renderer)  # the text alone, not its leader line
        placed.append((p.label, (float(xy[0]), float(xy[1])), (box.x0, box.y0, box.x1, box.y1)))
    plt.close(fig)
    return placed


def plot_bars(
    labels: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    scale: float = 100.0,
) -> Path:
    """Bar chart with seed-std error bars, value printed on each bar (for tables such as V3 Table 5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 4.0))
    x = np.arange(len(labels))
    m = np.asarray(means) * scale
    ax.bar(x, m, yerr=np.asarray(stds) * scale, capsize=4, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])
    for xi, mi in zip(x, m):
        ax.annotate(f"{mi:.1f}", (xi, mi), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    lo = float(np.min(m - np.asarray(stds) * scale))
    ax.set_ylim(max(0.0, lo - 0.1 * (float(np.max(m)) - lo + 1e-9) - 1.0), None)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return paths.resolve(path)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig`` as a PNG at ``path`` (local or in a bucket) through the path layer, 150 dpi."""
    path = paths.resolve(path)
    with path.open("wb") as f:
        fig.savefig(f, format="png", dpi=150, **kwargs)
    return path


def results_root(text: str) -> Path:
    """``--out``: a local directory or a bucket URI (argparse's type)."""
    try:
        return paths.resolve(text, "--out")
    except paths.PathError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=results_root, default=RESULTS_ROOT, help="results root, a directory or a bucket URI; writes <out>/<experiment>/ (default: %(default)s)")


def add_sweep_args(parser: argparse.ArgumentParser, default_seeds: Sequence[int] = (0, 1, 2)) -> None:
    """Arguments every training sweep shares: output root, seeds, rerun."""
    add_output_arg(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds), help="seeds per variant (default: %(default)s)")
    parser.add_argument("--rerun", action="store_true", help="ignore finished runs (runs/<id>/final.json) and run them again")
