"""The driver every training ablation shares: variants as config overrides, swept through the trainer.

An :class:`Ablation` is data: a base config file, the variants (dotted-key overrides, e.g.
``{"model_kwargs.shortcut": "none"}``), the orderings the paper claims, and the scale that fits a
2-core CPU. :func:`main` turns it into a command with ``--config`` / ``--dataset`` / ``--set`` for
full-scale runs, ``--smoke`` for tests, resumable runs under ``results/<name>/runs/``, the accuracy
curves in the paper's style (mean and min–max band over seeds), ``summary.csv`` and ``report.md``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mobilenet_jax import cli
from mobilenet_jax.overrides import apply_overrides, parse_assignments
from experiments import plots, reports, runs, stats

EMBEDDED_CONFIG = runs.REPO_ROOT / "configs" / "embedded.py"

# A few steps on a few hundred embedded images: end to end in the test suite.
SMOKE_OVERRIDES: dict[str, Any] = {
    "embedded_num_train": 128, "embedded_num_validation": 32, "embedded_num_eval": 32, "batch_size": 16,
    "eval_batch_size": 16, "num_train_steps": 4, "eval_every_steps": 2, "checkpoint_every_steps": 0,
    "log_every_steps": 2, "warmup_steps": 0, "num_devices": 1, "progress_bar": False, "tensorboard": False,
    "plateau_min_steps": 0,
}
# The CPU-scale proxy task, declared before the claims' runs from pilots scored on the validation
# split (results/recipe_pilots/). The embedded shapes under heavy pixel noise (s.d. 0.3-0.5 on a
# [-1, 1] range: some shapes cannot be told apart, so accuracy has a ceiling below 100%) with 2,000
# training images (generalisation matters): in the pilots Xception-0.25 passed 88% at step 500 with
# 97% training accuracy, where the plain embedded set gave 98-99.5%. The same images in every run
# (embedded_seed 0: a seed redraws the initialisation, the data order and dropout, never the data).
# Runs are monitored and stopped on the "validation" split; the claims are scored once, at the end,
# on the "eval" split (10,000 images: a binomial standard error of at most 0.5 points).
PROXY: dict[str, Any] = {
    "embedded_num_train": 2000, "embedded_num_validation": 4000,
    "embedded_num_eval": 10_000, "embedded_seed": 0, "embedded_noise": (0.3, 0.5), "eval_split": "validation",
    "test_split": "eval",
}
# The recipe: Nesterov SGD with clipping, a linear warm-up, then a constant learning rate (a run that
# stops is never one whose schedule ran out), weights averaged (EMA) for evaluation.
RECIPE: dict[str, Any] = {
    "optimizer": "sgd", "nesterov": True, "momentum": 0.9, "learning_rate": 0.02, "grad_clip_norm": 5.0,
    "lr_schedule": "constant", "warmup_steps": 100, "ema_decay": 0.99, "batch_size": 64,
}
# Trained to a plateau by the trainer's rule (mobilenet_jax/train/plateau.py): once 5 validation
# evaluations in a row (500 steps) have not improved on the best before them by half a point, from
# step 600 on and once the run has passed 20% (chance is 10%: in the pilots every family sat near
# chance for 100-300 steps before it took off), the learning rate falls linearly to 0 over 400 more
# steps (a cool-down: the final weights settle instead of sampling the plateau's noise) and the run
# ends. A 4,000-step budget for the constant phase: a run that reaches it before the rule is met is
# "fixed budget". (Without the cool-down, two pilot runs of one network stopped by a 4-evaluation
# rule ended 500 steps apart on a noisy validation curve: results/recipe_pilots/X_*.)
PLATEAU: dict[str, Any] = {
    "eval_every_steps": 100, "plateau_evals": 5, "plateau_delta": 0.005, "plateau_min_steps": 600,
    "plateau_min_value": 0.2, "plateau_min_lr_fraction": 0.5, "plateau_cooldown_steps": 400,
    "num_train_steps": 4000,
}
# Execution only (never compared when a sweep reuses a finished run): one device, a checkpoint
# every 500 steps so that a run killed with its session resumes, no best-checkpoint copies.
EXECUTION: dict[str, Any] = {
    "num_devices": 1, "progress_bar": False, "tensorboard": False, "checkpoint_every_steps": 500,
    "keep_checkpoints": 1, "keep_best_checkpoint": False, "log_every_steps": 100,
}
CPU_OVERRIDES: dict[str, Any] = {**PROXY, **RECIPE, **PLATEAU, **EXECUTION}
# ``--scale gpu`` on top of the CPU scale: every device, more images, 64x64 and a larger budget
# (each Ablation adds its own, e.g. the paper's width).
GPU_OVERRIDES: dict[str, Any] = {
    "num_devices": -1, "embedded_num_train": 10_000, "image_size": 64, "num_train_steps": 20_000,
}
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One paper figure/table as a sweep. ``claims`` are the paper's orderings, declared before the run,
    each with the paper's gap (stats.Claim); the verdict is decided on them alone."""

    name: str
    title: str
    paper_claim: str
    model: str
    variants: Mapping[str, Mapping[str, Any]]
    claims: Sequence[stats.Claim]
    cpu_overrides: Mapping[str, Any]  # the no-argument scale: under an hour on a 2-core CPU
    runtime: str  # stated in --help
    # What a run at the CPU scale can and cannot show (in every report).
    limits: str = ""
    gpu_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # --scale gpu, on top
    default_seeds: Sequence[int] = DEFAULT_SEEDS
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Optional extra output: (stats, configs by group, exp_dir) -> (figures, sections) for the report.
    extra: Callable[..., tuple[list[tuple[str, str]], list[tuple[str, str]]]] | None = None
    # Variants / orderings for --config or --dataset runs where they differ from the CPU scale's
    # (V1's grid: the paper's widths and resolutions).
    full_scale_variants: Mapping[str, Mapping[str, Any]] | None = None
    full_scale_claims: Sequence[stats.Claim] | None = None
    # The base trainer config, and the eval metric the claims are about (the trainer's metrics.jsonl
    # key: eval_accuracy for classification, eval_AP / eval_AP50 for detection) with its name in prose.
    config: Path = EMBEDDED_CONFIG
    metric: str = "eval_accuracy"  # the monitored (validation) curve
    metric_label: str = "accuracy"
    final_metric: str = "test_accuracy"  # the claims' value: the held-out split, once, at the end
    paper_data: str = "ImageNet"  # the data set of the paper's numbers (named in the CPU-scale caveat)
    # The pilots (validation split only) that chose this experiment's recipe, for the report.
    pilots: str = ("`results/recipe_pilots/` (V2-0.35 and Xception-0.25, one seed each: the plain shapes left no "
                   "headroom, smaller shapes stalled every optimiser, Adam learnt slower than the Nesterov SGD kept "
                   "here, and noise s.d. 0.3-0.5 put Xception's plateau at about 90%).")
    # The report's Reproduce line where it is not `python -m experiments.<name> <argv>` (the demo).
    command: str = ""

    @property
    def expect(self) -> list[tuple[str, str]]:
        """The claims' (better, worse) pairs, each once, in declaration order."""
        return list(dict.fromkeys((c.better, c.worse) for c in self.claims))


def build_configs(ab: Ablation, config_path: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One trainer config per variant: config file < model < scale overrides < variant; each
    validated here, so a bad --set fails before anything is written."""
    from mobilenet_jax.train import load_config, validate_config

    configs = {}
    for group, variant in ab.variants.items():
        # A whole model_kwargs replaces the file's; model_kwargs.* keys apply on top of it.
        config = apply_overrides(load_config(str(config_path)), {"model": ab.model, **overrides, **variant})
        validate_config(config)
        configs[group] = config
    return configs


def train_run(config: Any, workdir: Path) -> dict[str, Any]:
    """``run_fn`` for :func:`runs.run_sweep`: the one trainer, final metrics without the state."""
    import jax

    from mobilenet_jax.train import train_and_evaluate

    result = train_and_evaluate(config, str(workdir))
    # Each run compiles its own steps; kept alive, a 25-run sweep's executables exhausted the
    # process's memory maps (LLVM "Cannot allocate memory" at run 24). The persistent
    # compilation cache makes the next run's compile a cache read.
    jax.clear_caches()
    return run_summary(result)


def run_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a trainer's result: scalars and lists of scalars (the plateau
    rule's ``plateau_reduced_at`` steps), never the train state."""
    def scalar(v: Any) -> bool:
        return isinstance(v, (int, float, str, bool))
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in result.items()
            if k != "state" and (scalar(v) or (isinstance(v, (list, tuple)) and all(map(scalar, v))))}


def verdict(groups: Mapping[str, runs.GroupStats], claims: Sequence[stats.Claim]) -> tuple[str, list[stats.Verdict]]:
    """Every declared claim through :func:`stats.decide` (claims whose variants have no finished seed
    in common, as in a sweep under way, are left out), Holm-adjusted as one family; the headline
    counts the outcomes."""
    verdicts = []
    for c in claims:
        if c.better not in groups or c.worse not in groups or not set(groups[c.better].seeds) & set(groups[c.worse].seeds):
            continue
        a, b = groups[c.better], groups[c.worse]
        budget = "plateau" if c.metric == "final" and a.all_plateaued and b.all_plateaued else "fixed budget"
        verdicts.append(stats.decide(a.by_seed(c.metric), b.by_seed(c.metric), c, budget))
    verdicts = stats.with_holm(verdicts)
    if not verdicts:  # a sweep still under way: no claim has both of its variants yet
        missing = sorted({g for c in claims for g in (c.better, c.worse)} - set(groups))
        why = f"no finished run of {', '.join(missing)}" if missing else "no claim's two variants share a finished seed"
        return f"no claim scored yet: {why}", verdicts
    return stats.headline(verdicts), verdicts


def scaled(ab: Ablation, cpu_scale: bool) -> Ablation:
    """The ablation at full scale uses its ``full_scale_*`` variants and orderings where it has them."""
    if cpu_scale or ab.full_scale_variants is None:
        return ab
    return dataclasses.replace(ab, variants=ab.full_scale_variants, claims=ab.full_scale_claims or ab.claims)


def _variant_overrides(configs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, the config keys (dotted) where it differs from the others, read from the configs
    that ran (so a report regenerated from stored runs shows what those runs used); the seed aside."""
    flat = {g: runs._dotted(json.loads(json.dumps(runs.to_jsonable(c)))) for g, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f if k != "seed"})
    differ = [k for k in keys if len({(k in f, json.dumps(f.get(k))) for f in flat.values()}) > 1]
    return {g: {k: f[k] for k in differ if k in f} for g, f in flat.items()}  # a key a variant lacks is not None


def _num_final(config: Any, result: runs.RunResult, ab: Ablation) -> int | None:
    """How many images the final value was measured on."""
    prefix = ab.final_metric.split("_", 1)[0]
    n = result.summary.get(f"{prefix}_num_examples")
    if n is None and config.get("dataset") == "embedded":
        n = config.get("embedded_num_eval")
    return int(n) if n else None


def _is_accuracy(ab: Ablation) -> bool:
    return ab.metric.endswith("accuracy")


def report_sections(
    ab: Ablation,
    groups: Mapping[str, runs.GroupStats],
    results: Sequence[runs.RunResult],
    configs: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The per-variant table: the final held-out value's mean with its 95% t interval, the seed s.d.,
    the eval set's binomial s.e., the validation curve's mean, the step each seed plateaued at."""
    overrides = _variant_overrides(configs)
    rows = []
    for g, s in groups.items():
        first = next(r for r in results if r.group == g)
        n_final = _num_final(configs[g], first, ab)
        binom = (f"{100 * stats.binomial_se(s.final_mean, n_final):.2f} (N={n_final})"
                 if n_final and _is_accuracy(ab) else "–")
        plateaus = " ".join(str(p) if p >= 0 else "budget" for p in s.plateau_steps)
        rows.append([ab.labels.get(g, g), f"`{overrides[g]}`" if overrides[g] else "–",
                     stats.mean_ci(s.finals).fmt_level(), f"{100 * s.final_std:.2f}", binom,
                     f"{100 * s.speeds.mean():.2f}", plateaus, " ".join(map(str, s.seeds))])
    unit = "(%)" if _is_accuracy(ab) else "(x100)"
    headers = ["variant", "differs in", f"final {ab.metric_label} {unit}, mean [95% t CI]", "seed s.d.",
               "binomial s.e.", f"mean validation {ab.metric_label} over the shared steps {unit}",
               "plateau step per seed", "seeds"]
    if not _is_accuracy(ab):  # a binomial standard error is an accuracy's; AP is no proportion
        headers, rows = headers[:4] + headers[5:], [r[:4] + r[5:] for r in rows]
    table = reports.markdown_table(headers, rows)
    config = next(iter(configs.values()))
    if config.get("plateau_evals", 0) > 0:
        rule = (f"Plateau rule (mobilenet_jax/train/plateau.py, declared before the runs): a run stops once "
                f"{config.plateau_evals} validation evaluations in a row (every {config.eval_every_steps} steps) have "
                + (f"not improved on the best before them by {100 * config.plateau_delta:g} points"
                   if config.get("plateau_statistic", "best") == "best" else
                   f"a mean less than {100 * config.plateau_delta:g} points above that of the {config.plateau_evals} before them")
                + ", from step "
                f"{config.plateau_min_steps} on and past {config.get('plateau_min_value', 0.0):g} (a run still at chance has "
                f"not started), with the learning rate at >= {config.plateau_min_lr_fraction:g} of its "
                f"peak; the step shown is the evaluation it plateaued at"
                + (f"; the first {config.plateau_decays} plateau(s) instead multiplied the rate by "
                   f"{config.plateau_decay_factor:g} and started a phase ruled on its own evaluations, and the step "
                   f"shown is the last phase's" if config.get("plateau_decays", 0) else "")
                + (f", after which the rate fell linearly to 0 over {config.plateau_cooldown_steps} steps"
                   if config.get("plateau_cooldown_steps", 0) else "") + f". \"budget\" = the run reached its "
                f"{config.num_train_steps}-step budget first: its final value is a fixed-budget value.")
    else:
        rule = "These runs trained a fixed budget (no plateau rule): every final value is a fixed-budget value."
    best = max(groups.values(), key=lambda s: s.final_mean)
    headroom = (f"Headroom: the best variant, {ab.labels.get(best.group, best.group)}, ends at "
                f"{100 * best.final_mean:.2f} {unit.strip('()')} (mean over its seeds, seed s.d. {100 * best.final_std:.2f}); "
                + ("the proxy task is meant to keep it at or below 95%, so that sub-point gaps have room."
                   if _is_accuracy(ab) else f"{100 * (1 - best.final_mean):.0f} points below {ab.metric_label}'s ceiling "
                   "of 100 (perfect predictions)."))
    return [(f"Final {ab.metric_label}", table + "\n\n" + headroom + "\n\n" + rule)]


def verdict_table(verdicts: Sequence[stats.Verdict]) -> str:
    return reports.markdown_table(
        ["claim (paper: better > worse, or a = b ± margin)", "metric", "measured gap (pts) [95% t CI]", "p (Holm)",
         "paper's gap (pts)", "verdict", "Holm verdict", "runs", "size vs paper"],
        [[v.claim.name + (f" ± {v.claim.margin:g}" if v.claim.relation == "=" else ""),
          v.claim.metric + ("" if v.claim.quantity == "accuracy" else f" ({v.claim.quantity})"), v.gap.fmt(),
          f"{v.p:.3g} ({v.p_holm:.3g})", v.claim.paper_text(), v.outcome, v.holm_outcome, v.budget, v.size]
         for v in verdicts])


def verdict_records(verdicts: Sequence[stats.Verdict]) -> list[dict[str, Any]]:
    """``verdicts.json``: what results/README.md's table is built from."""
    return [{"claim": v.claim.name, "relation": v.claim.relation, "margin": v.claim.margin, "metric": v.claim.metric,
             "quantity": v.claim.quantity, "gap": v.gap.mean, "lo": v.gap.lo, "hi": v.gap.hi, "n": v.gap.n,
             "p": v.p, "p_holm": v.p_holm, "paper_gap": v.claim.paper_text(), "outcome": v.outcome,
             "holm_outcome": v.holm_outcome, "budget": v.budget, "size": v.size, "unit": v.claim.unit,
             "paired_by": v.claim.paired_by}
            for v in verdicts]


def main(ab: Ablation, argv: Sequence[str] | None = None) -> Path:
    parser = cli.ArgumentParser(
        prog=f"python -m experiments.{ab.name}",
        description=f"{ab.title}. Runtime with no arguments: {ab.runtime} (embedded data, CPU scale, "
                    f"{len(ab.default_seeds)} seeds). --scale gpu: a larger width, resolution, data set and step "
                    f"count on every device. Full scale: --config configs/<recipe>.py --dataset imagenet2012 "
                    f"--set num_epochs=... Interrupted sweeps resume: finished runs (runs/<id>/final.json) are skipped; "
                    f"--from-runs rewrites the report from the stored runs without training.")
    runs.add_sweep_args(parser, ab.default_seeds)
    parser.add_argument("--config", type=Path, default=ab.config, help="base trainer config file (default: %(default)s)")
    parser.add_argument("--dataset", default=None, help="override config.dataset (embedded, cifar10, imagenet2012, ...)")
    parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu",
                        help="embedded-data scale: cpu (the default, stated runtime) or gpu (larger; see GPU_OVERRIDES)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides, dotted keys")
    parser.add_argument("--from-runs", action="store_true",
                        help="no training: the report, figures and CSVs from every finished run under runs/")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on a few images, one seed, the paper's headline pair of variants (tests)")
    args = parser.parse_args(argv)

    cpu_scale = args.config == ab.config and args.dataset in (None, "embedded", "embedded_detection")
    overrides: dict[str, Any] = {**CPU_OVERRIDES, **ab.cpu_overrides} if cpu_scale else {}
    if cpu_scale and args.scale == "gpu":
        overrides.update({**GPU_OVERRIDES, **ab.gpu_overrides})
    ab = scaled(ab, cpu_scale)
    if args.smoke:
        overrides.update(SMOKE_OVERRIDES)
    if args.dataset:
        overrides["dataset"] = args.dataset
    overrides.update(parse_assignments(args.set, "--set"))
    seeds = [args.seeds[0]] if args.smoke else args.seeds
    if args.smoke:  # the paper's headline comparison only: two networks to compile
        head = ab.claims[0]
        ab = dataclasses.replace(ab, variants={g: ab.variants[g] for g in (head.better, head.worse)}, claims=[head])
    # every config is built (and a bad --set refused) before anything is written
    configs = None if args.from_runs else build_configs(ab, args.config, overrides)
    if configs is not None:  # a tfds set prepared on first use, or refused, before any folder is made
        from mobilenet_jax.data import prepare_data

        for config in {(c.dataset, c.data_dir): c for c in configs.values()}.values():
            prepare_data(config)
    suffix = "_smoke" if args.smoke else "_gpu" if (cpu_scale and args.scale == "gpu") else ""
    if args.from_runs:  # read first: a mistyped --out creates no folder
        results = runs.load_runs(runs.experiment_path(ab.name + suffix, args.out))
    exp_dir = runs.experiment_dir(ab.name + suffix, args.out)

    start = time.perf_counter()
    if args.from_runs:
        present = list(dict.fromkeys(r.group for r in results))
        order = [g for g in ab.variants if g in present] + [g for g in present if g not in ab.variants]
        from mobilenet_jax.train import load_config
        configs = {}
        for g in order:
            stored = runs.read_json(exp_dir / "runs" / next(r.run_id for r in results if r.group == g) / "final.json")
            configs[g] = load_config(str(args.config), {})
            configs[g].update(stored["config"])
    else:
        order = list(ab.variants)
        try:
            results = runs.run_sweep(runs.with_seeds(configs, seeds), train_run, exp_dir, metric=ab.metric,
                                     rerun=args.rerun, share_root=None if args.smoke else args.out)
        except runs.RunsElsewhere as e:  # a second process on another core: the last to finish reports
            print(f"{ab.name}: {e}")
            return exp_dir
    groups = runs.aggregate(results, order, final_key=ab.final_metric)
    seeds_run = sorted({r.seed for r in results})
    runs.write_csv(exp_dir / "curves.csv", reports.curves_rows(results, ab.metric))
    runs.write_csv(exp_dir / "summary.csv", reports.summary_rows(groups, ab.final_metric))
    curve_png = "accuracy_vs_steps.png" if _is_accuracy(ab) else f"{ab.metric}_vs_steps.png"
    unit = "(%)" if _is_accuracy(ab) else "(x100)"
    monitored = next(iter(configs.values())).get("eval_split") or "eval"  # the split the curves are on
    plots.plot_curves(groups, exp_dir / curve_png, title=ab.title, labels=ab.labels,
                      ylabel=f"{monitored} {ab.metric_label} {unit}")
    head, verdicts = verdict(groups, ab.claims)
    runs.write_json(exp_dir / "verdicts.json", verdict_records(verdicts))
    figures = [(f"{monitored.capitalize()}-split {ab.metric_label} against training step: mean over seeds, band = "
                f"min–max (a run that stopped at its plateau holds its last value); the legend gives each variant's "
                f"final value, the one its claims are scored on.", curve_png)]
    sections = [("Verdicts", verdict_table(verdicts) + "\n\n" + _VERDICT_RULE.format(metric=ab.metric_label))]
    sections += report_sections(ab, groups, results, configs)
    if ab.extra is not None:
        more_figures, more_sections = ab.extra(groups, configs, exp_dir)
        figures += more_figures
        sections += more_sections
    config = next(iter(configs.values()))
    steps = (f"{config.num_train_steps} steps" if config.num_train_steps >= 0 else f"{config.num_epochs} epochs")
    shared = sorted({r.summary.get("shared_from", "") for r in results} - {""})
    warmup = (f"{config.warmup_steps} warm-up steps" if config.warmup_steps >= 0
              else f"{config.warmup_epochs:g} warm-up epochs")
    recipe = (f"optimizer {config.optimizer} lr {config.learning_rate} ({config.lr_schedule} after {warmup}; "
              f"clip {config.grad_clip_norm:g}, EMA {config.ema_decay:g})")
    setup = (f"Data: `{config.dataset}`" + (
        f" ({config.embedded_num_train} train / {config.get('embedded_num_validation')} validation / "
        f"{config.embedded_num_eval} eval images, shape size {tuple(config.get('embedded_shape_size', ()))}, the same "
        f"draw in every run: a seed redraws the initialisation, the data order and dropout)"
        if config.dataset == "embedded" and config.get("embedded_seed", -1) >= 0 else "") +
        f"; monitored on split `{config.eval_split or 'eval'}`, claims scored on "
        f"`{config.get('test_split') or config.eval_split or 'eval'}`. Model `{config.model}` "
        f"{runs.to_jsonable(dict(config.model_kwargs))}, image size {config.image_size}, batch {config.batch_size}, "
        f"budget {steps}, eval every {config.eval_every_steps} steps, {recipe}; seeds {seeds_run}. Training time, sum "
        f"over the {len(results)} runs: {sum(r.wall_s for r in results) / 60:.1f} min ({os.cpu_count()} CPU cores seen; "
        f"runs reused from earlier invocations: {sum(r.resumed for r in results)}, this invocation "
        f"{time.perf_counter() - start:.0f} s).")
    if shared:
        setup += (" Runs of the same network with the same settings are trained once and shared between experiments: "
                  f"this one's came from {', '.join(f'`{s}`' for s in shared)} (each run's final.json names its source).")
    if ab.pilots and cpu_scale:
        setup += f" Recipe pilots (validation split only, before the claims' runs): {ab.pilots}"
    if args.from_runs:
        setup += (f" This report was rebuilt from the stored runs (`--from-runs`, no training): the setup above is "
                  f"theirs (each run's full config is in runs/<id>/config.json). `python -m experiments.{ab.name}` "
                  f"runs the current default: {ab.runtime}.")
    n_min = min(s.n for s in groups.values())
    caveats = []
    if n_min < 5:
        caveats.append(f"With {n_min} seed{'s' * (n_min != 1)} per variant a 95% t interval is wide "
                       f"(±{stats.t_quantile(max(n_min - 1, 1)):.1f} standard errors at n = {max(n_min, 2)}): "
                       f"only gaps far larger than the seed spread are decided; the claims want 5 seeds.")
    if any(v.budget != "plateau" and v.claim.metric == "final" for v in verdicts):
        caveats.append("Claims marked *fixed budget* compare runs of which at least one reached its step budget "
                       "before its plateau: their gaps say how far each variant got in that budget as much as where it "
                       "converges.")
    if cpu_scale:
        caveats.append(f"This is the embedded shapes data set at CPU scale, not {ab.paper_data}: the paper's "
                       f"{ab.paper_data} gaps need not carry over, so a size that differs from the paper's is a finding "
                       "about this scale.")
    outcome = f"**{head[:1].upper() + head[1:]}.** " + " ".join(v.line() for v in verdicts)
    argv_text = " ".join(argv) if argv is not None else ""
    command = ab.command or f"python -m experiments.{ab.name}" + (f" {argv_text}" if argv_text else "")
    legacy = args.from_runs and not config.get("test_split")
    if legacy:  # runs made before the proxy task and the plateau rule existed
        caveats.insert(0, "These runs predate the proxy task, the plateau rule and the held-out scoring now declared in "
                          "experiments/ablation.py (their setup is below): they stay until this experiment's rerun at "
                          "the current defaults lands, and their verdicts are fixed-budget ones.")
    limits = (ab.limits.strip() + " " if ab.limits and cpu_scale and not legacy else "") + " ".join(caveats)
    sections += [("What this run can and cannot show", limits or "–"), ("Setup", setup),
                 ("Files", "`curves.csv` (every run's validation curve), `summary.csv` (per variant), `verdicts.json` "
                           "(the verdict table), `runs/<run_id>/` (trainer workdirs: metrics.jsonl, config.json, "
                           "final.json).")]
    report = reports.write_report(exp_dir, title=ab.title, paper_claim=ab.paper_claim, outcome=outcome,
                                  command=command, figures=figures, sections=sections)
    print(f"{head}:\n  " + "\n  ".join(v.line() for v in verdicts))
    print(f"wrote {exp_dir}; report: {report}")
    return report


_VERDICT_RULE = (
    "Rule (the same for every experiment, fixed before the runs): each claim is judged once, on its declared metric "
    "(the final {metric} on the held-out split unless the row says *speed*: the mean of the validation curve over "
    "the steps every run trained, a fixed-budget claim). The gap better − worse is paired by seed (a seed gives "
    "every variant the same data and order) with its 95% t interval (scipy.stats). An ordering *a > b* **agrees** "
    "when the whole interval is above 0, **disagrees** when wholly below 0, **inconclusive** otherwise. An equality "
    "*a = b ± m* (the paper's \"no difference\", with the margin m declared before the runs) **agrees** when two "
    "one-sided t tests put the gap inside ±m (p < 0.05), **disagrees** when the whole interval lies outside ±m, "
    "**inconclusive** otherwise. *Holm verdict*: the same decision at the Holm-adjusted p-value (the experiment's "
    "claims as one family). *Runs*: **plateau** when every run of both variants stopped at its plateau, else "
    "**fixed budget**. *Size vs paper*: consistent when the paper's gap lies in (overlaps) an interval that "
    "excludes 0 (for an equality: the interval holds it), larger/smaller when the interval lies wholly above/below "
    "it, not resolved when the interval holds both 0 and the paper's gap.")
