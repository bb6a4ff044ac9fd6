"""The driver every training ablation shares: variants as config overrides, swept through the trainer.

An :class:`Ablation` is data: a base config file, the variants (dotted-key overrides, e.g.
``{"model_kwargs.shortcut": "none"}``), the orderings the paper claims, and the scale that fits a
2-core CPU. :func:`main` turns it into a command with ``--config`` / ``--dataset`` / ``--set`` for
full-scale runs, ``--smoke`` for tests, resumable runs under ``results/<name>/runs/``, the accuracy
curves in the paper's style (mean and min–max band over seeds), ``summary.csv`` and ``report.md``.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mobilenet_jax import cli
from mobilenet_jax.errors import UsageError
from experiments import common

EMBEDDED_CONFIG = common.REPO_ROOT / "configs" / "embedded.py"

# A few steps on a few hundred embedded images: end to end in the test suite.
SMOKE_OVERRIDES: dict[str, Any] = {
    "embedded_num_train": 128, "embedded_num_eval": 32, "batch_size": 16, "eval_batch_size": 16,
    "num_train_steps": 4, "eval_every_steps": 2, "checkpoint_every_steps": 0, "log_every_steps": 2,
    "warmup_steps": 0, "num_devices": 1, "progress_bar": False, "tensorboard": False,
}
# Defaults of every CPU-scale sweep (each Ablation adds its own).
CPU_OVERRIDES: dict[str, Any] = {
    "num_devices": 1, "progress_bar": False, "tensorboard": False, "checkpoint_every_steps": 0,
    "embedded_num_train": 8000, "embedded_num_eval": 1000, "eval_every_steps": 50,
}


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One paper figure/table as a sweep. ``expect`` lists (paper's better variant, worse variant)."""

    name: str
    title: str
    paper_claim: str
    model: str
    variants: Mapping[str, Mapping[str, Any]]
    expect: Sequence[tuple[str, str]]
    cpu_overrides: Mapping[str, Any]  # the no-argument scale: minutes on a 2-core CPU
    runtime: str  # stated in --help
    default_seeds: Sequence[int] = (0, 1)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Optional extra output: (stats, configs by group, exp_dir) -> (figures, sections) for the report.
    extra: Callable[..., tuple[list[tuple[str, str]], list[tuple[str, str]]]] | None = None
    # Variants / orderings for --config or --dataset runs where they differ from the CPU scale's
    # (V1's grid: the paper's widths and resolutions).
    full_scale_variants: Mapping[str, Mapping[str, Any]] | None = None
    full_scale_expect: Sequence[tuple[str, str]] | None = None


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["batch_size=256", "model_kwargs.width=1.0"]`` -> dict; values are Python literals or strings."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def build_configs(ab: Ablation, config_path: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One trainer config per variant: config file < model < scale overrides < variant; each
    validated here, so a bad --set fails before anything is written."""
    from mobilenet_jax.train import load_config, validate_config

    configs = {}
    for group, variant in ab.variants.items():
        merged = {"model": ab.model, **overrides, **variant}
        config = load_config(str(config_path), {k: v for k, v in merged.items() if k != "model_kwargs"})
        config.model_kwargs = dict(merged.get("model_kwargs", config.model_kwargs))
        for key, value in merged.items():  # model_kwargs.* after the reset above
            if key.startswith("model_kwargs."):
                config.model_kwargs[key.split(".", 1)[1]] = value
        validate_config(config)
        configs[group] = config
    return configs


def train_run(config: Any, workdir: Path) -> dict[str, Any]:
    """``run_fn`` for :func:`common.run_sweep`: the one trainer, final metrics without the state."""
    from mobilenet_jax.train import train_and_evaluate

    result = train_and_evaluate(config, str(workdir))
    return {k: v for k, v in result.items() if k != "state" and isinstance(v, (int, float, str, bool))}


def verdict(stats: Mapping[str, common.GroupStats], expect: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """'Supported' / 'Contradicted' / 'Inconclusive' from the paper's orderings, with one line each.

    A pair is judged on final accuracy (gap beyond 2 standard errors over seeds); where the finals
    are within noise (e.g. both near 100%), on the mean of the learning curve instead: which
    variant converged faster, said as such."""
    lines, states = [], []
    for better, worse in expect:
        a, b = stats[better], stats[worse]
        n = min(a.n, b.n)
        state = _state(*common.gap(a, b), n)
        line = f"paper: {better} > {worse}. Here: {common.compare_text(a, b)}"
        if state == "inconclusive" and n >= 2:
            speed_diff, speed_se = common.gap(a, b, over_run=True)
            state = _state(speed_diff, speed_se, n)
            line += (f"; over the run (mean of the curve) {speed_diff * 100:+.2f} ± {speed_se * 100:.2f} pts: "
                     + ({"agrees": f"{better} converges faster", "disagrees": f"{worse} converges faster",
                         "inconclusive": "no faster variant either"}[state]))
        states.append(state)
        lines.append(f"{line} → **{state}**.")
    if all(s == "agrees" for s in states):
        head = "Supported"
    elif any(s == "disagrees" for s in states):
        head = "Contradicted" if all(s == "disagrees" for s in states) else "Mixed"
    else:
        head = "Inconclusive" if not any(s == "agrees" for s in states) else "Partly supported"
    return head, lines


def _state(diff: float, se: float, n: int) -> str:
    return "inconclusive" if n < 2 or abs(diff) <= 2 * se else ("agrees" if diff > 0 else "disagrees")


def scaled(ab: Ablation, cpu_scale: bool) -> Ablation:
    """The ablation at full scale uses its ``full_scale_*`` variants and orderings where it has them."""
    if cpu_scale or ab.full_scale_variants is None:
        return ab
    return dataclasses.replace(ab, variants=ab.full_scale_variants, expect=ab.full_scale_expect or ab.expect)


def main(ab: Ablation, argv: Sequence[str] | None = None) -> Path:
    parser = cli.ArgumentParser(
        prog=f"python -m experiments.{ab.name}",
        description=f"{ab.title}. Runtime with no arguments: {ab.runtime} (embedded data, CPU scale). "
                    f"Full scale: --config configs/<recipe>.py --dataset imagenet2012 --set num_epochs=... "
                    f"Interrupted sweeps resume: finished runs (runs/<id>/final.json) are skipped.")
    common.add_sweep_args(parser, ab.default_seeds)
    parser.add_argument("--config", type=Path, default=EMBEDDED_CONFIG, help="base trainer config file (default: %(default)s)")
    parser.add_argument("--dataset", default=None, help="override config.dataset (embedded, cifar10, imagenet2012, ...)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides, dotted keys")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on a few images, one seed, the paper's headline pair of variants (tests)")
    args = parser.parse_args(argv)

    cpu_scale = args.config == EMBEDDED_CONFIG and args.dataset in (None, "embedded")
    overrides: dict[str, Any] = {**CPU_OVERRIDES, **ab.cpu_overrides} if cpu_scale else {}
    ab = scaled(ab, cpu_scale)
    if args.smoke:
        overrides.update(SMOKE_OVERRIDES)
    if args.dataset:
        overrides["dataset"] = args.dataset
    overrides.update(parse_set(args.set))
    seeds = [args.seeds[0]] if args.smoke else args.seeds
    if args.smoke:  # the paper's headline comparison only: two networks to compile
        ab = dataclasses.replace(ab, variants={g: ab.variants[g] for g in ab.expect[0]}, expect=ab.expect[:1])
    configs = build_configs(ab, args.config, overrides)
    exp_dir = common.experiment_dir(ab.name + ("_smoke" if args.smoke else ""), args.out)
    specs = common.with_seeds(configs, seeds)

    start = time.perf_counter()
    results = common.run_sweep(specs, train_run, exp_dir, rerun=args.rerun)
    stats = common.aggregate(results, list(ab.variants))
    common.write_csv(exp_dir / "curves.csv", common.curves_rows(results))
    common.write_csv(exp_dir / "summary.csv", common.summary_rows(stats))
    common.plot_curves(stats, exp_dir / "accuracy_vs_steps.png", title=ab.title, labels=ab.labels)
    head, lines = verdict(stats, ab.expect)
    table = common.markdown_table(
        ["variant", "config overrides", "final eval accuracy (%)", "min", "max", "mean over the run (%)", "seeds"],
        [[ab.labels.get(g, g), f"`{common.to_jsonable(dict(ab.variants[g]))}`",
          common.fmt_mean_std(s.final_mean, s.final_std, s.n), f"{100 * s.finals.min():.2f}",
          f"{100 * s.finals.max():.2f}", f"{100 * s.speeds.mean():.2f}", " ".join(map(str, s.seeds))]
         for g, s in stats.items()])
    figures = [("Eval accuracy against training step: mean over seeds, band = min–max.", "accuracy_vs_steps.png")]
    sections = [("Final accuracy", table)]
    if ab.extra is not None:
        more_figures, more_sections = ab.extra(stats, configs, exp_dir)
        figures += more_figures
        sections += more_sections
    config = next(iter(configs.values()))
    scale = (f"dataset `{config.dataset}`, model `{config.model}` {common.to_jsonable(dict(config.model_kwargs))}, "
             f"image size {config.image_size}, batch {config.batch_size}, "
             f"{config.num_train_steps if config.num_train_steps >= 0 else str(config.num_epochs) + ' epochs'} steps, "
             f"optimizer {config.optimizer} lr {config.learning_rate} ({config.lr_schedule}); seeds {seeds}. "
             f"Training time, sum over the {len(results)} runs: {sum(r.wall_s for r in results) / 60:.1f} min "
             f"({os.cpu_count()} CPU cores seen; runs reused from earlier "
             f"invocations: {sum(r.resumed for r in results)}, this invocation {time.perf_counter() - start:.0f} s).")
    caveat = ("" if not cpu_scale else
              " This is the embedded shapes data set at CPU scale, not ImageNet: a few minutes of training on a "
              "small model, and the paper's ImageNet gaps need not carry over. With two or three seeds the standard "
              "error is itself rough: read the 2-s.e. rule as a screen, and a gap under a point as weak evidence.")
    argv_text = " ".join(argv) if argv is not None else ""
    command = f"python -m experiments.{ab.name}" + (f" {argv_text}" if argv_text else "")
    sections += [("Setup", scale), ("Files", "`curves.csv` (every run's eval curve), `summary.csv` (per variant), "
                                              "`runs/<run_id>/` (trainer workdirs: metrics.jsonl, config.json, final.json).")]
    report = common.write_report(exp_dir, title=ab.title, paper_claim=ab.paper_claim,
                                 outcome=f"**{head}.** " + " ".join(lines) + caveat, command=command,
                                 figures=figures, sections=sections)
    print(f"{head}: " + " | ".join(lines))
    print(f"wrote {exp_dir}; report: {report}")
    return report
