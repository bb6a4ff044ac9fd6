"""MobileNetV1 Tables 4-7 and Figs. 4-5: separable vs full conv, thinner vs shallower, width x resolution.

``python -m experiments.v1_tradeoffs`` (see ``--help`` for runtime and full-scale options). The CPU scale
maps the paper's resolutions 224/192/160/128 to 56/48/40/32 (exactly its 7:6:5:4 ratios; 32 is the
smallest input MobileNetV1 takes).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments import common
from experiments.ablation import Ablation, main

WIDTHS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (56, 48, 40, 32)  # CPU scale; pass --set image_size=... per run only through the variants


def _variants(resolutions=RESOLUTIONS) -> dict[str, dict[str, Any]]:
    grid = {f"w{w}-r{r}": {"model_kwargs.width": w, "image_size": r} for w in WIDTHS for r in resolutions}
    top = resolutions[0]
    return {
        **grid,
        "full-conv": {"model_kwargs.width": 1.0, "model_kwargs.conv_type": "full", "image_size": top},
        "shallow": {"model_kwargs.width": 1.0, "model_kwargs.shallow": True, "image_size": top},
    }


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
                         title="MobileNetV1 Figs. 4-5 — accuracy vs multiply-adds")
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
        "smoothly with width and resolution, log-linear in multiply-adds, with a jump down at α=0.25."),
    model="mobilenet_v1",
    variants=_variants(),
    # The first pair is also the --smoke run (the two cheapest networks).
    expect=[("w0.5-r56", "w0.25-r56"), ("full-conv", "w1.0-r56"), ("w0.75-r56", "shallow"),
            ("w1.0-r56", "w0.75-r56"), ("w0.75-r56", "w0.5-r56"), ("w1.0-r56", "w1.0-r32")],
    cpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9},
                   "embedded_num_train": 4000, "embedded_num_eval": 1000, "num_train_steps": 300,
                   "eval_every_steps": 50, "checkpoint_every_steps": 0},
    runtime="about 60-90 minutes on 2 CPU cores (18 variants x 2 seeds x 300 steps); use --seeds 0 to halve it",
    extra=tradeoff,
)

if __name__ == "__main__":
    main(ABLATION)
