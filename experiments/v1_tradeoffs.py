"""MobileNetV1 Tables 4-7 and Figs. 4-5: separable vs full conv, thinner vs shallower, width x resolution.

``python -m experiments.v1_tradeoffs`` (see ``--help`` for runtime and full-scale options).

Two scales, one table of variants each. Full scale (any ``--dataset`` / ``--config``): the paper's
widths 1, 0.75, 0.5, 0.25 and resolutions 224, 192, 160, 128; Table 4's full-convolution and Table
5's shallow network at width 1.0, 224. CPU scale (no arguments): the same grid at half the width
and a quarter of the resolution (56/48/40/32 keeps the 7:6:5:4 ratios; 32 is the smallest input
MobileNetV1 takes); Table 4's full-convolution network at the narrowest width (a full 3x3 conv at
width 0.5 is over 3 s per step on 2 cores) and Table 5's pair at the analogues of 0.75 and
1.0-shallow; learning rate 0.05 (V1 has no residuals; see cpu_overrides).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobilenet_jax import cli
from experiments import common
from experiments.ablation import Ablation, main

PAPER_WIDTHS = (1.0, 0.75, 0.5, 0.25)
PAPER_RESOLUTIONS = (224, 192, 160, 128)
CPU_WIDTHS = tuple(w / 2 for w in PAPER_WIDTHS)
CPU_RESOLUTIONS = tuple(r // 4 for r in PAPER_RESOLUTIONS)


def _variants(widths: tuple[float, ...], resolutions: tuple[int, ...], full_conv_width: float) -> dict[str, dict[str, Any]]:
    """The width x resolution grid (Tables 6-7, Figs. 4-5), then Table 4's full-conv network and
    Table 5's shallow one (the widest width, five 14x14 blocks removed)."""
    top = resolutions[0]
    grid = {f"w{w}-r{r}": {"model_kwargs.width": w, "image_size": r} for w in widths for r in resolutions}
    return {
        **grid,
        "full-conv": {"model_kwargs.width": full_conv_width, "model_kwargs.conv_type": "full", "image_size": top},
        "shallow": {"model_kwargs.width": widths[0], "model_kwargs.shallow": True, "image_size": top},
    }


def _expect(widths: tuple[float, ...], resolutions: tuple[int, ...], full_conv_width: float) -> list[tuple[str, str]]:
    """The paper's orderings (Table 5: the second width, "thinner", vs shallow); the first pair
    (two cheap networks) is also the --smoke run."""
    w1, w2, w3, w4 = widths
    r1, r4 = resolutions[0], resolutions[-1]
    return [(f"w{w3}-r{r1}", f"w{w4}-r{r1}"), ("full-conv", f"w{full_conv_width}-r{r1}"),
            (f"w{w2}-r{r1}", "shallow"), (f"w{w1}-r{r1}", f"w{w2}-r{r1}"),
            (f"w{w2}-r{r1}", f"w{w3}-r{r1}"), (f"w{w1}-r{r1}", f"w{w1}-r{r4}")]


def madds_of(config: Any) -> int:
    """Multiply-adds of the variant's network at its resolution (mobilenet_jax.profile, counted from the model)."""
    from mobilenet_jax import create_model
    from mobilenet_jax.profile import count_madds

    num_classes = config.num_classes if config.num_classes > 0 else 10
    model = create_model(config.model, num_classes=num_classes, **dict(config.model_kwargs))
    return int(count_madds(model, config.image_size))


def tradeoff(stats: Mapping[str, common.GroupStats], configs: Mapping[str, Any], exp_dir: Path):
    """Figs. 4-5: accuracy against multiply-adds (log), one series per width; plus a table with MAdds."""
    madds = {g: madds_of(configs[g]) for g in stats}
    points = [common.TradeoffPoint(g.split("-")[1] if g.startswith("w") else g, madds[g], s.final_mean, s.final_std,
                                   f"width {configs[g].model_kwargs['width']}" if g.startswith("w") else "ablations (Tables 4-5)")
              for g, s in stats.items()]
    common.plot_tradeoff(points, exp_dir / "accuracy_vs_madds.png",
                         title="MobileNetV1 Figs. 4-5 — accuracy vs multiply-adds", unjoined=["ablations (Tables 4-5)"])
    common.write_csv(exp_dir / "madds.csv", [{"group": g, "madds": m} for g, m in madds.items()])
    rows = [[g, f"{madds[g] / 1e6:.2f}", common.fmt_mean_std(s.final_mean, s.final_std, s.n)] for g, s in stats.items()]
    return ([("Accuracy against multiply-adds (log scale), one line per width; error bars = seed std.",
              "accuracy_vs_madds.png")],
            [("Multiply-adds", common.markdown_table(["variant", "MAdds (M)", "final eval accuracy (%)"], rows))])


ABLATION = Ablation(
    name="v1_tradeoffs",
    title="MobileNetV1 Tables 4-7, Figs. 4-5 — the width/resolution trade-offs",
    paper_claim=(
        "Table 4: full convolutions gain only 1.1 points (71.7 vs 70.6) for ~8.6x the multiply-adds. Table 5: thinner "
        "(α=0.75, 68.4) beats shallower (65.3) by 3 points at similar cost. Tables 6-7, Figs. 4-5: accuracy falls "
        "smoothly with width and resolution, log-linear in multiply-adds, with a jump down at α=0.25. At CPU scale "
        "every width is halved and every resolution quartered (w0.5-r56 stands for the paper's 1.0 at 224)."),
    model="mobilenet_v1",
    variants=_variants(CPU_WIDTHS, CPU_RESOLUTIONS, full_conv_width=CPU_WIDTHS[-1]),
    expect=_expect(CPU_WIDTHS, CPU_RESOLUTIONS, full_conv_width=CPU_WIDTHS[-1]),
    full_scale_variants=_variants(PAPER_WIDTHS, PAPER_RESOLUTIONS, full_conv_width=1.0),
    full_scale_expect=_expect(PAPER_WIDTHS, PAPER_RESOLUTIONS, full_conv_width=1.0),
    # V1 has no residuals and learns slowly at the embedded recipe's 0.02: width 0.25 at 32x32 reached
    # 19% after 300 steps, 51% at 0.05 (30% at 0.1; 32% at 0.02 without clipping).
    cpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9}, "num_train_steps": 300,
                   "learning_rate": 0.05},
    runtime="about 40-75 minutes on 2 CPU cores (18 networks x 2 seeds x 300 steps; 76.6 min measured with other jobs sharing the cores)",
    extra=tradeoff,
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
