"""MobileNetV3 Sec. 6.4 / Table 7 at CPU scale: LR-ASPP on V3-Large (with and without the halved
tail, at output stride 16 and 8) and V3-Small against MobileNetV2's Mobile DeepLabv3 (R-ASPP),
trained on the embedded segmentation set; mean IoU with the other experiments' statistics.

``python -m experiments.segmentation_heads`` (see ``--help`` for runtime and options).

Every variant goes through the one trainer from configs/segmentation_embedded.py (the segmentation
task: per-pixel cross-entropy, mean IoU from an exact confusion matrix), five seeds each. The report
adds each network's parameters and multiply-adds at 1024x2048 with Cityscapes' 19 classes (the
paper's evaluation size), counted from the module, and a figure of each network's predicted masks
on the same eval images.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments import plots, reports, runs, stats
from experiments.ablation import Ablation, main
from mobilenet_jax import cli

SEGMENTATION_CONFIG = runs.REPO_ROOT / "configs" / "segmentation_embedded.py"
CITYSCAPES_CLASSES = 19

# (group, label, model, model_kwargs). V2's row is V2 Sec. 6.3's Mobile DeepLabv3: R-ASPP (the
# 1x1 and image-pooling branches) on "MNet V2*" (no last 1x1 conv), no 3x3 conv after the head.
NETWORKS = (
    ("v3-large", "V3-Large LR-ASPP (halved tail, paper)", "lraspp",
     {"backbone": "mobilenet_v3_large", "reduced_tail": True, "output_stride": 16}),
    ("v3-small", "V3-Small LR-ASPP (halved tail)", "lraspp",
     {"backbone": "mobilenet_v3_small", "reduced_tail": True, "output_stride": 16}),
    ("v3-large-full-tail", "V3-Large LR-ASPP, full tail", "lraspp",
     {"backbone": "mobilenet_v3_large", "reduced_tail": False, "output_stride": 16}),
    ("v3-large-os8", "V3-Large LR-ASPP at output stride 8", "lraspp",
     {"backbone": "mobilenet_v3_large", "reduced_tail": True, "output_stride": 8}),
    ("v2-raspp", "V2 R-ASPP (Mobile DeepLabv3)", "deeplabv3",
     {"backbone": "mobilenet_v2", "aspp": "reduced", "head_conv": False, "last_conv": False,
      "reduced_tail": False, "output_stride": 16, "dropout_rate": 0.0}),
)
# Declared before the runs: the margin within which two networks' mean IoU counts as the paper's
# "similar accuracy" / "without much loss", 1.5 points of mIoU (x100).
EQUAL_MARGIN = 1.5
_NO_TABLE = "V3 Table 7's rows are not transcribed in docs/papers.md"


def _variant(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": model, **{f"model_kwargs.{k}": v for k, v in kwargs.items()}}


def sizes_and_predictions(groups: Mapping[str, runs.GroupStats], configs: Mapping[str, Any], exp_dir: Path):
    """Each network's size at Cityscapes' evaluation resolution and the predicted-masks figure."""
    from mobilenet_jax.models import create_model
    from mobilenet_jax.sizes import model_size

    rows = []
    for group, label, model, kwargs in NETWORKS:
        if group not in groups:
            continue
        size = model_size(create_model(model, num_classes=CITYSCAPES_CLASSES, **kwargs), (1024, 2048))
        rows.append([label, f"{(size.params - size.batch_stats) / 1e6:.3f}M", f"{size.madds / 1e9:.2f}B",
                     stats.mean_ci(groups[group].finals).fmt_level()])
    table = reports.markdown_table(["network", "params (width 1.0, 19 classes)", "MAdds @1024x2048",
                                    "mean IoU here (x100), mean [95% t CI]"], rows)
    note = ("Sizes at width 1.0 with Cityscapes' 19 classes at its 1024x2048 evaluation size, without BatchNorm's "
            "moving statistics; the runs here are width 0.35 at 64x64 on the embedded set. " + _NO_TABLE + ", so no "
            "paper count stands beside them; torchvision's builders are counted in tests/test_segmentation_models.py.")
    figures = []
    path = exp_dir / "predictions.png"
    try:
        seed = _plot_predictions(path, configs, exp_dir, groups)
        caption = (f"Image, ground truth and each network's predicted mask on the same eval images, seed {seed}'s "
                   "final state (the smallest seed every network still has checkpoints for).")
    except FileNotFoundError:  # checkpoints are not committed: keep the figure the training invocation drew
        caption = ("Image, ground truth and each network's predicted mask on the same eval images, the seed named "
                   "in the figure's title. (Not redrawn by this invocation: no seed has every network's "
                   "checkpoints here; checkpoints are not committed.)")
    if path.exists():
        figures.append((caption, "predictions.png"))
    return figures, [("Sizes", table + "\n\n" + note)]


def _checkpointed_seed(exp_dir: Path, order: list[str], groups: Mapping[str, runs.GroupStats]) -> int:
    """The smallest seed whose run of every network still has its checkpoints (they are not committed,
    so a fresh clone or a rerun of some seeds leaves only some)."""
    shared = set.intersection(*({int(s) for s in groups[g].seeds} for g in order))
    for seed in sorted(shared):
        if all((exp_dir / "runs" / f"{g}-s{seed}" / "checkpoints").is_dir() for g in order):
            return seed
    raise FileNotFoundError(f"no seed of {sorted(shared)} has checkpoints for every network under {exp_dir}/runs")


def _plot_predictions(path: Path, configs: Mapping[str, Any], exp_dir: Path,
                      groups: Mapping[str, runs.GroupStats], num_images: int = 4) -> int:
    """Row 0: images; row 1: ground truth; one row per network: its final checkpoint, all of one seed
    (returned). Raises FileNotFoundError when no seed has every network's checkpoints."""
    import jax
    import numpy as np

    from mobilenet_jax.data import embedded_segmentation
    from mobilenet_jax.models import create_model
    from mobilenet_jax.segmentation.visualize import colorize, palette, to_uint8
    from mobilenet_jax.train.checkpoint import restore_variables

    order = [g for g, *_ in NETWORKS if g in groups]
    seed = _checkpointed_seed(exp_dir, order, groups)
    first = runs.set_config_seed(configs[order[0]], seed)
    draw = first.seed if first.embedded_seed < 0 else first.embedded_seed
    low, high = first.embedded_detection_object_size
    evals = embedded_segmentation.make_split(
        "eval", num_images, first.image_size, draw, classes=tuple(first.embedded_detection_classes) or None,
        max_objects=first.embedded_detection_max_objects, min_size=low, max_size=high,
        noise=tuple(first.embedded_noise))
    num_classes = len(embedded_segmentation.class_names(tuple(first.embedded_detection_classes) or None))
    colors = palette(num_classes)
    predicted = {}
    for g in order:
        workdir = exp_dir / "runs" / f"{g}-s{seed}"
        config = configs[g]
        model = create_model(config.model, num_classes=num_classes, **dict(config.model_kwargs))
        _, variables = restore_variables(workdir, model, config.image_size)
        logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, evals["image"])
        predicted[g] = np.argmax(np.asarray(logits), -1)

    plt = plots._pyplot()
    rows = [("image", to_uint8(evals["image"])), ("ground truth", colorize(evals["segmentation"], colors))]
    rows += [(g, colorize(predicted[g], colors)) for g in order]  # the group names: labels are long
    fig, axes = plt.subplots(len(rows), num_images, figsize=(1.8 * num_images, 1.8 * len(rows)), squeeze=False,
                             layout="constrained")  # no gap under the title
    for r, (name, pictures) in enumerate(rows):
        for i in range(num_images):
            ax = axes[r, i]
            ax.imshow(pictures[i], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(f"Embedded segmentation, seed {seed}: predicted masks (white: ignored outline band)", fontsize=9)
    plots.save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return seed


def _claim(better: str, worse: str, source: str, relation: str = ">") -> stats.Claim:
    return stats.Claim(better, worse, None, source, quantity="mIoU", relation=relation,
                       margin=EQUAL_MARGIN if relation == "=" else None)


ABLATION = Ablation(
    name="segmentation_heads",
    title="MobileNetV3 Sec. 6.4 at CPU scale — LR-ASPP on V3-Large / V3-Small vs V2's R-ASPP, halved tail, "
          "output stride",
    paper_claim=(
        "V3 Sec. 6.4 and Table 7 (Cityscapes val, mean IoU): LR-ASPP on MobileNetV3-Large is 34% faster than "
        "MobileNetV2 with R-ASPP (Mobile DeepLabv3, V2 Sec. 6.3) at similar accuracy (the abstract: 30%); halving "
        "the filters of the last stage (the tail) removes multiply-adds with little loss; V3-Small is several "
        "points below V3-Large; output stride 8 costs far more multiply-adds than 16 for a higher mIoU."),
    model="lraspp",
    variants={g: _variant(model, kwargs) for g, _, model, kwargs in NETWORKS},
    # Declared before the runs, in this order (the first pair, two LR-ASPP networks, is the --smoke pair).
    claims=[_claim("v3-large", "v3-small", "Table 7: V3-Small several points lower; " + _NO_TABLE),
            _claim("v3-large", "v2-raspp", "abstract, Sec. 6.4: similar accuracy, 30-34% faster", "="),
            _claim("v3-large-full-tail", "v3-large", "Sec. 6.4: the halved tail loses little", "="),
            _claim("v3-large-os8", "v3-large", "Table 7: OS 8 above OS 16; " + _NO_TABLE)],
    # Declared from the validation-only pilots in results/recipe_pilots (seg_*), before the claims' runs:
    # the classification proxy's splits with segmentation's own data and recipe. Shapes of half-extent
    # 0.3-0.6 of the image under pixel noise s.d. 0.1-0.2 (at 0.15-0.4 only 6% of the 1/16 cells are
    # mostly foreground and R-ASPP, which predicts at 1/16, never left all-background); Adam 3e-3 as the
    # detectors (the config's), constant after the warm-up, the gradient clipped to norm 1 (unclipped,
    # the first steps' gradients of norm 15-140 fill Adam's second moment and the networks sit at
    # all-background for 600 steps (V3-Large) to over 1,800 (V2 R-ASPP)); EMA weights. Its own plateau
    # rule, pinned here: on validation mIoU, 5 evaluations without half a point from step 600 once past
    # 20% (all-background is ~7-8%); the first plateau divides the rate by 10, the second stops the run;
    # a 10,000-step budget.
    cpu_overrides={"model_kwargs.width": 0.35, "model_kwargs.bn_momentum": 0.9, "embedded_num_train": 2048,
                   "embedded_num_validation": 256, "embedded_num_eval": 1024, "eval_batch_size": 64,
                   "embedded_noise": (0.1, 0.2), "embedded_detection_object_size": (0.3, 0.6),
                   "optimizer": "adam", "learning_rate": 3e-3, "grad_clip_norm": 1.0, "weight_decay": 0.0,
                   "batch_size": 32, "eval_every_steps": 100, "plateau_evals": 5, "plateau_delta": 0.005,
                   "plateau_min_steps": 600, "plateau_min_value": 0.2, "plateau_min_lr_fraction": 0.5,
                   "plateau_decays": 1, "plateau_decay_factor": 0.1, "plateau_cooldown_steps": 0,
                   "num_train_steps": 10_000},
    gpu_overrides={"model_kwargs.width": 1.0, "num_train_steps": 20_000, "eval_every_steps": 500,
                   "embedded_num_train": 20_000, "embedded_num_eval": 2000, "image_size": 128},
    runtime=("about 4-5 hours on 2 CPU cores (5 networks x 5 seeds of batch 32 at 64x64, width 0.35, each to its "
             "plateau of validation mean IoU: 14-29 minutes a run on one core, output stride 8 the slowest)"),
    limits=(
        "Table 7 is Cityscapes at 1024x2048 after full training; this is width 0.35 at 64x64 on the embedded shapes "
        "(half-extent 0.3-0.6 of the image) under pixel noise s.d. 0.1-0.2, where the 1/16 map is 4x4 and the 1/8 "
        "skip 8x8: the heads' large-context branches see most of the image either way, and R-ASPP, which predicts "
        "at 1/16 with no skip, draws each mask from 4x4 logits, where Cityscapes gives it 64x128; a gap between "
        "LR-ASPP (with its 1/8 skip) and R-ASPP here measures that resolution as much as the backbones. "
        + _NO_TABLE + ": every paper gap is 'no number', and the "
        "equality claims (V3-Large LR-ASPP = V2 R-ASPP, full tail = halved tail) carry a margin of "
        f"{EQUAL_MARGIN:g} mIoU points declared before the runs. The paper's speed half of the claim (30-34% faster) "
        "is a latency claim, measured by `python -m benchmarks.latency`, not here."),
    labels={g: label for g, label, *_ in NETWORKS},
    pilots=("`results/recipe_pilots/seg_*` (README sections 'Segmentation pilots', one seed each: under the "
            "declared splits the smaller shapes left V3-Large still rising at its budget and V2 R-ASPP at "
            "all-background; unclipped Adam stalled every network for 600-1,800 steps; the declared recipe, "
            "half-extent 0.3-0.6 with the gradient clipped to 1, plateaued V3-Large by the rule at 80.0 in 3,900 "
            "steps and V2 R-ASPP at 53.7 in 4,500)."),
    extra=sizes_and_predictions,
    config=SEGMENTATION_CONFIG,
    metric="eval_mean_iou",
    metric_label="mean IoU",
    final_metric="test_mean_iou",
    paper_data="Cityscapes",
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
