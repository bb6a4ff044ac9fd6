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
import json
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
# Defaults of every CPU-scale sweep (each Ablation adds its own). 4,000 eval images: the binomial
# standard error of an accuracy is at most 0.8 points (0.3 at 96%), below the seed-to-seed spread
# the committed runs show (0.1-35 points; 1,000 images gave up to 1.6).
CPU_OVERRIDES: dict[str, Any] = {
    "num_devices": 1, "progress_bar": False, "tensorboard": False, "checkpoint_every_steps": 0,
    "embedded_num_train": 8000, "embedded_num_eval": 4000, "eval_every_steps": 50,
}
# ``--scale gpu`` on top of the CPU scale: every device, a larger data set, width, resolution and
# step count (each Ablation adds its own, e.g. the paper's width).
GPU_OVERRIDES: dict[str, Any] = {
    "num_devices": -1, "embedded_num_train": 20_000, "embedded_num_eval": 10_000, "image_size": 64,
    "eval_every_steps": 100,
}
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One paper figure/table as a sweep. ``claims`` are the paper's orderings, declared before the run,
    each with the paper's gap (common.Claim); the verdict is decided on them alone."""

    name: str
    title: str
    paper_claim: str
    model: str
    variants: Mapping[str, Mapping[str, Any]]
    claims: Sequence[common.Claim]
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
    full_scale_claims: Sequence[common.Claim] | None = None
    # The base trainer config, and the eval metric the claims are about (the trainer's metrics.jsonl
    # key: eval_accuracy for classification, eval_AP / eval_AP50 for detection) with its name in prose.
    config: Path = EMBEDDED_CONFIG
    metric: str = "eval_accuracy"
    metric_label: str = "eval accuracy"
    paper_data: str = "ImageNet"  # the data set of the paper's numbers (named in the CPU-scale caveat)

    @property
    def expect(self) -> list[tuple[str, str]]:
        """The claims' (better, worse) pairs, each once, in declaration order."""
        return list(dict.fromkeys((c.better, c.worse) for c in self.claims))


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
    import jax

    from mobilenet_jax.train import train_and_evaluate

    result = train_and_evaluate(config, str(workdir))
    # Each run compiles its own steps; kept alive, a 25-run sweep's executables exhausted the
    # process's memory maps (LLVM "Cannot allocate memory" at run 24). The persistent
    # compilation cache makes the next run's compile a cache read.
    jax.clear_caches()
    return {k: v for k, v in result.items() if k != "state" and isinstance(v, (int, float, str, bool))}


def verdict(stats: Mapping[str, common.GroupStats], claims: Sequence[common.Claim]) -> tuple[str, list[common.Verdict]]:
    """Every declared claim through :func:`common.decide` (claims whose variants did not run are
    left out); the headline counts the outcomes."""
    verdicts = [common.decide(stats, c) for c in claims if c.better in stats and c.worse in stats]
    return common.headline(verdicts), verdicts


def scaled(ab: Ablation, cpu_scale: bool) -> Ablation:
    """The ablation at full scale uses its ``full_scale_*`` variants and orderings where it has them."""
    if cpu_scale or ab.full_scale_variants is None:
        return ab
    return dataclasses.replace(ab, variants=ab.full_scale_variants, claims=ab.full_scale_claims or ab.claims)


def _variant_overrides(configs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, the config keys (dotted) where it differs from the others, read from the configs
    that ran (so a report regenerated from stored runs shows what those runs used); the seed aside."""
    flat = {g: common._dotted(json.loads(json.dumps(common.to_jsonable(c)))) for g, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f if k != "seed"})
    differ = [k for k in keys if len({json.dumps(f.get(k)) for f in flat.values()}) > 1]
    return {g: {k: f.get(k) for k in differ} for g, f in flat.items()}


def _num_eval(config: Any, result: common.RunResult) -> int | None:
    n = result.summary.get("eval_num_examples")
    if n is None and config.get("dataset") == "embedded":
        n = config.get("embedded_num_eval")
    return int(n) if n else None


def _plateau_text(step: int | None, last: int) -> str:
    return "not flat" if step is None else f"{step}"


def _is_accuracy(ab: Ablation) -> bool:
    return ab.metric == "eval_accuracy"


def report_sections(
    ab: Ablation,
    stats: Mapping[str, common.GroupStats],
    results: Sequence[common.RunResult],
    configs: Mapping[str, Any],
) -> tuple[list[tuple[str, str]], str, bool]:
    """The per-variant table (mean with its 95% t interval, seed s.d., the eval set's binomial s.e., the
    step each seed plateaued at) and the plateau summary line; the bool says whether every run plateaued."""
    overrides = _variant_overrides(configs)
    rows, all_flat = [], True
    for g, s in stats.items():
        runs = sorted((r for r in results if r.group == g), key=lambda r: r.seed)
        ci = common.mean_ci(s.finals)
        n_eval = _num_eval(configs[g], runs[0])
        binom = (f"{100 * common.binomial_se(s.final_mean, n_eval):.2f} (N={n_eval})"
                 if n_eval and _is_accuracy(ab) else "–")
        plateaus = [common.plateau_step(r.curve) for r in runs]
        all_flat &= all(p is not None for p in plateaus)
        rows.append([ab.labels.get(g, g), f"`{overrides[g]}`" if overrides[g] else "–", ci.fmt_level(),
                     f"{100 * s.final_std:.2f}", binom, f"{100 * s.speeds.mean():.2f}",
                     " ".join(_plateau_text(p, int(r.curve.steps[-1])) for p, r in zip(plateaus, runs)),
                     " ".join(map(str, s.seeds))])
    headers = ["variant", "differs in", f"final {ab.metric_label} (%), mean [95% t CI]", "seed s.d.",
               "eval-set binomial s.e.", "mean over the run (%)", "plateau step per seed", "seeds"]
    if not _is_accuracy(ab):  # a binomial standard error is an accuracy's; AP is no proportion
        headers, rows = headers[:4] + headers[5:], [r[:4] + r[5:] for r in rows]
        headers = [h.replace("(%)", "(x100)") for h in headers]
    table = common.markdown_table(headers, rows)
    rule = (f"Plateau rule (declared before the runs): a run has plateaued at eval step s when the next "
            f"evals (at least {common.PLATEAU_EVALS} of them) never improve on the best {ab.metric_label} so far by "
            f"{100 * common.PLATEAU_DELTA:.0f} point or more; \"not flat\" = no such step (still rising at the end, or "
            f"too few evals to tell).")
    return [(f"Final {ab.metric_label}", table + "\n\n" + rule)], rule, all_flat


def verdict_table(verdicts: Sequence[common.Verdict], labels: Mapping[str, str] | None = None) -> str:
    return common.markdown_table(
        ["claim (paper: better > worse, or a = b)", "metric", "measured gap (pts) [95% t CI]", "paper's gap (pts)", "verdict",
         "size vs paper"],
        [[v.claim.name, v.claim.metric + ("" if v.claim.quantity == "accuracy" else f" ({v.claim.quantity})"), v.gap.fmt(), v.claim.paper_text(), v.outcome, v.size] for v in verdicts])


def verdict_records(verdicts: Sequence[common.Verdict]) -> list[dict[str, Any]]:
    """``verdicts.json``: what results/README.md's table is built from."""
    return [{"claim": v.claim.name, "metric": v.claim.metric, "quantity": v.claim.quantity, "gap": v.gap.mean, "lo": v.gap.lo, "hi": v.gap.hi,
             "n": v.gap.n, "paper_gap": v.claim.paper_text(), "outcome": v.outcome, "size": v.size}
            for v in verdicts]


def main(ab: Ablation, argv: Sequence[str] | None = None) -> Path:
    parser = cli.ArgumentParser(
        prog=f"python -m experiments.{ab.name}",
        description=f"{ab.title}. Runtime with no arguments: {ab.runtime} (embedded data, CPU scale, "
                    f"{len(ab.default_seeds)} seeds). --scale gpu: a larger width, resolution, data set and step "
                    f"count on every device. Full scale: --config configs/<recipe>.py --dataset imagenet2012 "
                    f"--set num_epochs=... Interrupted sweeps resume: finished runs (runs/<id>/final.json) are skipped; "
                    f"--from-runs rewrites the report from the stored runs without training.")
    common.add_sweep_args(parser, ab.default_seeds)
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
    overrides.update(parse_set(args.set))
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
        results = common.load_runs(common.experiment_path(ab.name + suffix, args.out))
    exp_dir = common.experiment_dir(ab.name + suffix, args.out)

    start = time.perf_counter()
    if args.from_runs:
        present = list(dict.fromkeys(r.group for r in results))
        order = [g for g in ab.variants if g in present] + [g for g in present if g not in ab.variants]
        from mobilenet_jax.train import load_config
        configs = {}
        for g in order:
            stored = common.read_json(exp_dir / "runs" / next(r.run_id for r in results if r.group == g) / "final.json")
            configs[g] = load_config(str(args.config), {})
            configs[g].update(stored["config"])
    else:
        order = list(ab.variants)
        results = common.run_sweep(common.with_seeds(configs, seeds), train_run, exp_dir, metric=ab.metric,
                                   rerun=args.rerun)
    stats = common.aggregate(results, order)
    seeds_run = sorted({r.seed for r in results})
    common.write_csv(exp_dir / "curves.csv", common.curves_rows(results, ab.metric))
    common.write_csv(exp_dir / "summary.csv", common.summary_rows(stats, ab.metric))
    curve_png = "accuracy_vs_steps.png" if _is_accuracy(ab) else f"{ab.metric}_vs_steps.png"
    common.plot_curves(stats, exp_dir / curve_png, title=ab.title, labels=ab.labels,
                       ylabel="eval top-1 accuracy (%)" if _is_accuracy(ab) else f"{ab.metric_label} (x100)")
    head, verdicts = verdict(stats, ab.claims)
    common.write_json(exp_dir / "verdicts.json", verdict_records(verdicts))
    figures = [(f"{ab.metric_label[:1].upper() + ab.metric_label[1:]} against training step: mean over seeds, "
                f"band = min–max.", curve_png)]
    sections, rule, all_flat = report_sections(ab, stats, results, configs)
    sections = [("Verdicts", verdict_table(verdicts) + "\n\n" + _VERDICT_RULE.format(metric=ab.metric_label))] + sections
    if ab.extra is not None:
        more_figures, more_sections = ab.extra(stats, configs, exp_dir)
        figures += more_figures
        sections += more_sections
    config = next(iter(configs.values()))
    steps = (f"{config.num_train_steps} steps" if config.num_train_steps >= 0 else f"{config.num_epochs} epochs")
    setup = (f"dataset `{config.dataset}` ({config.get('embedded_num_train')} train / {config.get('embedded_num_eval')} "
             f"eval images where embedded), model `{config.model}` {common.to_jsonable(dict(config.model_kwargs))}, "
             f"image size {config.image_size}, batch {config.batch_size}, {steps}, eval every "
             f"{config.eval_every_steps} steps, optimizer {config.optimizer} lr {config.learning_rate} "
             f"({config.lr_schedule}); seeds {seeds_run}. Training time, sum over the {len(results)} runs: "
             f"{sum(r.wall_s for r in results) / 60:.1f} min ({os.cpu_count()} CPU cores seen; runs reused from earlier "
             f"invocations: {sum(r.resumed for r in results)}, this invocation {time.perf_counter() - start:.0f} s).")
    if args.from_runs:
        setup += (f" This report was rebuilt from the stored runs (`--from-runs`, no training): the setup above is "
                  f"theirs (each run's full config is in runs/<id>/config.json). `python -m experiments.{ab.name}` "
                  f"now runs the current default instead: {ab.runtime}.")
    n_min = min(s.n for s in stats.values())
    caveats = []
    if n_min < 5:
        caveats.append(f"With {n_min} seed{'s' * (n_min != 1)} per variant a 95% t interval is wide "
                       f"(±{common.t_quantile_975(max(n_min - 1, 1)):.1f} standard errors at n = {max(n_min, 2)}): "
                       f"only gaps far larger than the seed spread are decided, the rest are honestly inconclusive, "
                       f"and these runs cannot say more; the default is now 5 seeds.")
    if not all_flat:
        caveats.append("Some runs were still rising at their last eval (see the plateau column): their gaps measure "
                       "how fast each variant learns at this step count as much as where it converges.")
    if cpu_scale:
        caveats.append(f"This is the embedded shapes data set at CPU scale, not {ab.paper_data}: the paper's {ab.paper_data} "
                       "gaps need not carry over, so a size that differs from the paper's is a finding about this scale.")
    outcome = f"**{head[:1].upper() + head[1:]}.** " + " ".join(v.line() for v in verdicts)
    argv_text = " ".join(argv) if argv is not None else ""
    command = f"python -m experiments.{ab.name}" + (f" {argv_text}" if argv_text else "")
    limits = (ab.limits.strip() + " " if ab.limits and cpu_scale else "") + " ".join(caveats)
    sections += [("What this run can and cannot show", limits or "–"), ("Setup", setup),
                 ("Files", "`curves.csv` (every run's eval curve), `summary.csv` (per variant), `verdicts.json` "
                           "(the verdict table), `runs/<run_id>/` (trainer workdirs: metrics.jsonl, config.json, "
                           "final.json).")]
    report = common.write_report(exp_dir, title=ab.title, paper_claim=ab.paper_claim, outcome=outcome,
                                 command=command, figures=figures, sections=sections)
    print(f"{head}:\n  " + "\n  ".join(v.line() for v in verdicts))
    print(f"wrote {exp_dir}; report: {report}")
    return report


_VERDICT_RULE = (
    "Rule (the same for every experiment, fixed before the runs): each claim is judged once, on its declared metric "
    "(the final {metric} unless the row says *speed*, the mean of the eval curve). The gap better − worse is paired "
    "by seed; **agrees** when its whole 95% t interval is above 0, **disagrees** when wholly below 0, "
    "**inconclusive** otherwise. A claim written *a = b* is the paper's \"no difference\" (its gap about 0): it "
    "**disagrees** when the interval excludes 0 and is otherwise **inconclusive**, never *agrees* (an interval "
    "cannot show the absence of a difference without a margin declared for it). *Size vs paper*: consistent when the paper's gap lies in (overlaps) an interval that "
    "excludes 0, larger/smaller when the interval lies wholly above/below it, not resolved when the interval holds "
    "both 0 and the paper's gap.")
