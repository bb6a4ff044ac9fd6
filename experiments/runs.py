"""Experiment runs on disk: output folders, JSON/CSV files, one run's record, resumable sweeps,
and the per-variant aggregation of runs over seeds.

Every experiment writes under ``results/<experiment>/``; ``runs/<run_id>/`` is the workdir handed
to the trainer, and its ``final.json`` (written last, atomically) marks the run finished: a sweep
skips finished runs whose experiment-relevant settings are the ones it asks for (keys at the
trainer's defaults and execution-only keys are not compared, so a trainer key added later never
invalidates a run), and trains the rest. The trainer is reached only through
``run_fn(config, workdir) -> dict``; its metrics are read with ``mobilenet_jax.train.metrics``.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_jax import paths
from mobilenet_jax.errors import Preempted, UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = REPO_ROOT / "results"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


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


def read_curve(workdir: str | Path, metric: str = "eval_accuracy") -> Curve:
    """One metric of a trainer workdir against step, read by ``mobilenet_jax.train.metrics``:
    ``"eval_accuracy"`` is split ``eval``, key ``accuracy`` (``"eval_AP"``: key ``AP``)."""
    from mobilenet_jax.train.metrics import read_metrics

    split, _, key = metric.partition("_")
    by_step = {int(r["step"]): float(r[key]) for r in read_metrics(workdir, split) if r.get(key) is not None}
    steps = np.array(sorted(by_step), dtype=np.int64)
    return Curve(steps=steps, values=np.array([by_step[s] for s in steps], dtype=np.float64))


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


# Config keys that say how a run was executed, not what it computed: a finished run is reused
# whatever they were (the trainer's data order and results do not depend on them).
EXECUTION_KEYS = ("num_devices", "prefetch", "progress_bar", "tensorboard", "compilation_cache_dir",
                  "keep_checkpoints", "keep_best_checkpoint", "log_every_steps", "checkpoint_every_steps",
                  "eval_batch_size", "distributed")


def _relevant(config: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys of a JSON config that decide its result: execution keys dropped, and keys
    at their schema default dropped too, so a key added to the trainer later (with a default)
    never makes an old run look different."""
    flat = _dotted(json.loads(json.dumps(to_jsonable(config))))
    return {k: v for k, v in flat.items()
            if k.split(".")[0] not in EXECUTION_KEYS and not (k in defaults and defaults[k] == v)}


def _schema_defaults() -> dict[str, Any]:
    from mobilenet_jax.train.config import default_config

    return _dotted(json.loads(json.dumps(to_jsonable(default_config()))))


def _check_same_config(stored: Any, config: Any, final_path: Path) -> None:
    """A finished run is reused only for the settings it was run with (else its numbers would lie);
    settings are compared by :func:`_relevant`."""
    if stored is None:
        return
    defaults = _schema_defaults()
    a, b = _relevant(stored, defaults), _relevant(config, defaults)
    if a == b:
        return
    key = next(k for k in sorted(set(a) | set(b)) if a.get(k, "<default>") != b.get(k, "<default>"))
    raise ValueError(
        f"{final_path} was run with {key}={a.get(key, '<default>')!r}, this sweep asks for "
        f"{b.get(key, '<default>')!r}: pass --rerun to train it again, or --out for a fresh results directory")


def find_finished_run(root: str | Path, config: Any, *, metric: str = "eval_accuracy",
                      exclude: Path | None = None) -> Path | None:
    """A finished run under ``root/<experiment>/runs/`` whose relevant settings equal ``config``'s and
    whose record holds the curve of ``metric``."""
    root = paths.resolve(root, "--out")
    defaults = _schema_defaults()
    want = _relevant(config, defaults)
    for final_path in sorted(root.glob("*/runs/*/final.json")):
        if exclude is not None and final_path.parent.parent.parent == exclude:
            continue
        final = read_json(final_path)
        if ("shared_from" not in final.get("summary", {}) and final.get("metric", metric) == metric
                and _relevant(final.get("config"), defaults) == want):
            return final_path.parent
    return None


def _copy_run(source: Path, workdir: Path, spec: RunSpec, root: str | Path) -> RunResult:
    """``source``'s record and metrics as this sweep's run ``spec`` (checkpoints stay where they are)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "config.json"):
        if (source / name).exists():
            (workdir / name).write_text((source / name).read_text())
    final = read_json(source / "final.json")
    origin = f"{source.parent.parent.name}/{source.name}"
    final.update(run_id=spec.run_id, group=spec.group, config=spec.config)
    final["summary"] = {**final["summary"], "shared_from": origin}
    write_json(workdir / "final.json", final)
    return _result_from_final(read_json(workdir / "final.json"), resumed=True)


def load_runs(exp_dir: str | Path) -> list[RunResult]:
    """Every finished run under ``exp_dir/runs/`` (those with a ``final.json``), sorted by run id: a
    report can be rebuilt from them without training."""
    finals = sorted((Path(exp_dir) / "runs").glob("*/final.json"))
    if not finals:
        raise UserError(f"no finished run (runs/<id>/final.json) under {exp_dir}: nothing to rebuild the report "
                        "from; run the experiment without --from-runs (or pass the --out it used)")
    return [_result_from_final(read_json(f), resumed=True) for f in finals]


class RunsElsewhere(Exception):
    """The sweep's other runs are being trained by other processes (a second ``python -m
    experiments.<name>`` on another core): this one leaves the report to the one that finishes
    last. Not a mistake: commands print the message and exit 0."""


LOCK_NAME = ".sweep.lock"
WALL_NAME = "wall_s.json"  # an unfinished run's wall time so far, over its interrupted invocations


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<workdir>/.sweep.lock``: while a process trains a
    run it holds the lock, so a second sweep over the same runs (another core, another terminal)
    trains the next free run instead of the same one. The kernel drops the lock when its process
    ends (SIGKILL and crashes included), so no lock goes stale; the file is never deleted (a
    deleted lock file lets two processes hold locks on two inodes). Local folders only: object
    stores have no locks, and there every sweep trains every run it finds unfinished."""

    def __init__(self, fd: int | None):
        self._fd = fd

    @staticmethod
    def holder(workdir: Path) -> str:
        try:
            return (workdir / LOCK_NAME).read_text().strip() or "another process"
        except OSError:
            return "another process"

    @classmethod
    def acquire(cls, workdir: Path) -> "RunLock | None":
        """The lock, or None while another process holds it."""
        if not paths.is_local(workdir):
            return cls(None)
        import fcntl
        import socket

        fd = os.open(os.fspath(workdir / LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def run_sweep(
    specs: Sequence[RunSpec],
    run_fn: RunFn,
    exp_dir: str | Path,
    *,
    metric: str = "eval_accuracy",
    rerun: bool = False,
    share_root: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Run every spec through ``run_fn(config, workdir)``, skipping runs whose ``final.json`` exists.

    ``workdir`` is ``exp_dir/runs/<run_id>``; the run's ``metric`` curve is read from its metrics.
    ``final.json`` (config, run_fn's summary, the curve, wall time) is written only after ``run_fn``
    returns unpreempted, so an interrupted run is started again (the trainer resumes it from its
    checkpoints); a summary with ``preempted`` (SIGTERM) raises ``Preempted`` and the sweep stops.
    ``rerun=True`` ignores finished runs and overwrites them. With ``share_root`` (the results root),
    a run that another experiment already finished with the same relevant settings (the same
    network, data, recipe and seed) is copied from it instead of trained again; its final.json
    says where it came from (``summary["shared_from"]``).

    Several processes may sweep the same specs at once (one per core): each trains the runs whose
    :class:`RunLock` it gets and leaves the others to their holders. A process that ends with runs
    still in other hands raises :class:`RunsElsewhere` instead of returning; the last to finish
    finds every run finished and returns them all (each writes its final.json before it looks).
    """
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate run ids in sweep: {sorted({i for i in ids if ids.count(i) > 1})}")
    for run_id in ids:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} must match {_RUN_ID.pattern} (it names a directory)")
    exp_dir = paths.resolve(exp_dir, "--out")
    results: list[RunResult | None] = []
    elsewhere: dict[int, RunSpec] = {}  # runs another process held when this one reached them
    for i, spec in enumerate(specs, start=1):
        workdir = exp_dir / "runs" / spec.run_id
        final_path = workdir / "final.json"
        if final_path.exists() and not rerun:
            final = read_json(final_path)
            _check_same_config(final.get("config"), spec.config, final_path)
            log(f"[{i}/{len(specs)}] {spec.run_id}: finished earlier, skipped")
            results.append(_result_from_final(final, resumed=True))
            continue
        source = None if (rerun or share_root is None) else find_finished_run(share_root, spec.config, metric=metric, exclude=exp_dir)
        if source is not None:
            results.append(_copy_run(source, workdir, spec, share_root))
            log(f"[{i}/{len(specs)}] {spec.run_id}: the same run as {results[-1].summary['shared_from']}, shared")
            continue
        workdir.mkdir(parents=True, exist_ok=True)
        lock = RunLock.acquire(workdir)
        if lock is None:
            log(f"[{i}/{len(specs)}] {spec.run_id}: being trained by {RunLock.holder(workdir)}, left to it")
            elsewhere[len(results)] = spec
            results.append(None)
            continue
        try:
            if final_path.exists() and not rerun:  # finished by its holder between the check above and the lock
                results.append(_result_from_final(read_json(final_path), resumed=True))
                continue
            results.append(_train_one(spec, run_fn, workdir, metric, log, f"[{i}/{len(specs)}]"))
        finally:
            lock.release()
    for index, spec in elsewhere.items():
        final_path = exp_dir / "runs" / spec.run_id / "final.json"
        if final_path.exists():
            results[index] = _result_from_final(read_json(final_path), resumed=True)
    busy = [spec.run_id for index, spec in elsewhere.items() if results[index] is None]
    if busy:
        raise RunsElsewhere(
            f"{len(busy)} run(s) still being trained by other processes ({', '.join(busy)}); the process that "
            "finishes the last run writes the report (or run this command again, or with --from-runs, once they finish)")
    return [r for r in results if r is not None]


def _train_one(spec: RunSpec, run_fn: RunFn, workdir: Path, metric: str, log: Callable[[str], None],
               counter: str) -> RunResult:
    """One run through ``run_fn``; its final.json once it returns unpreempted."""
    final_path, spent_path = workdir / "final.json", workdir / WALL_NAME
    log(f"{counter} {spec.run_id}: running")
    earlier = float(read_json(spent_path)["wall_s"]) if spent_path.exists() else 0.0
    start = time.perf_counter()
    try:
        summary = run_fn(spec.config, workdir)
    finally:  # an interrupted invocation's time counts toward the run's wall time when it resumes
        wall_s = earlier + time.perf_counter() - start
        write_json(spent_path, {"wall_s": wall_s})
    if not isinstance(summary, Mapping):
        raise TypeError(f"run_fn must return a dict of final metrics, got {type(summary).__name__} for {spec.run_id}")
    if summary.get("preempted"):  # checkpointed, not finished: no final.json, and the sweep stops here
        raise Preempted(f"run {spec.run_id} was preempted (SIGTERM) at step {summary.get('step')}: its checkpoint "
                        f"is in {workdir}; run the same command again to resume it and the rest of the sweep")
    curve = read_curve(workdir, metric)
    if curve.steps.size == 0:
        raise ValueError(f"run {spec.run_id}: run_fn logged no {metric!r} in {workdir}")
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
    spent_path.unlink()
    log(f"{counter} {spec.run_id}: {metric} {curve.final:.4f} at step {int(curve.steps[-1])} ({wall_s:.1f} s)")
    return _result_from_final(read_json(final_path), resumed=False)



@dataclasses.dataclass(frozen=True)
class GroupStats:
    """One variant over its seeds: the mean validation curve with its min–max band (a run that
    stopped at its plateau holds its last value), each seed's final held-out value (``finals``),
    its mean over the steps every seed ran (``speeds``: how fast it learned), and whether it
    stopped at its plateau (``plateau_steps``, -1 where it ran out of budget instead)."""

    group: str
    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray  # min over seeds
    hi: np.ndarray  # max over seeds
    finals: np.ndarray
    seeds: tuple[int, ...]
    speeds: np.ndarray
    plateau_steps: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def final_mean(self) -> float:
        return float(self.finals.mean())

    @property
    def final_std(self) -> float:
        return float(self.finals.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def all_plateaued(self) -> bool:
        return all(p >= 0 for p in self.plateau_steps)

    def by_seed(self, metric: str = "final") -> dict[int, float]:
        """Per-seed values of a claim's metric (``"final"`` or ``"speed"``), for pairing."""
        values = self.finals if metric == "final" else self.speeds
        return dict(zip(self.seeds, values.tolist()))


def final_value(result: RunResult, final_key: str) -> float:
    """A run's final value: ``final_key`` of its summary (the held-out test split, e.g.
    ``test_accuracy``), or the last point of its curve where the run has no such key."""
    value = result.summary.get(final_key)
    return float(value) if value is not None else result.curve.final


def aggregate(results: Sequence[RunResult], groups: Sequence[str] | None = None,
              final_key: str = "test_accuracy") -> dict[str, GroupStats]:
    """Group runs by variant (order: ``groups`` or first seen) and summarise them over seeds."""
    order = list(groups) if groups is not None else list(dict.fromkeys(r.group for r in results))
    stats = {}
    for group in order:
        runs = sorted((r for r in results if r.group == group), key=lambda r: r.seed)
        if not runs:
            raise ValueError(f"no runs for group {group!r}")
        steps = np.array(sorted({int(s) for r in runs for s in r.curve.steps}), dtype=np.int64)
        filled = []
        for r in runs:  # the value at each step: the last evaluation at or before it
            idx = np.searchsorted(r.curve.steps, steps, side="right") - 1
            filled.append(np.where(idx >= 0, r.curve.values[np.maximum(idx, 0)], np.nan))
        values = np.stack(filled)  # (seeds, steps)
        first, last = max(int(r.curve.steps[0]) for r in runs), min(int(r.curve.steps[-1]) for r in runs)
        upto = (steps >= first) & (steps <= last)  # the steps every seed evaluated
        if not upto.any():
            raise ValueError(f"group {group!r}: the seeds' curves share no evaluation step")
        stats[group] = GroupStats(
            group=group, steps=steps, mean=np.nanmean(values, 0), lo=np.nanmin(values, 0), hi=np.nanmax(values, 0),
            finals=np.array([final_value(r, final_key) for r in runs]), seeds=tuple(r.seed for r in runs),
            speeds=values[:, upto].mean(1),
            plateau_steps=tuple(int(r.summary.get("plateau_step", -1)) for r in runs),
        )
    return stats


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

