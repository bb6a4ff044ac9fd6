"""MobileNetV2 Fig. 6b (Sec. 6.4): shortcut between bottlenecks vs between expansions vs no residual.

``python -m experiments.v2_shortcut`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main
from experiments.stats import Claim

ABLATION = Ablation(
    name="v2_shortcut",
    title="MobileNetV2 Fig. 6b — where the residual shortcut goes",
    paper_claim=(
        "\"The shortcut connecting bottleneck perform better than shortcuts connecting the expanded layers\" "
        "(Sec. 6.4, Fig. 6b, ImageNet top-1 over 7M steps); the inverted design \"works slightly better\" (Sec. 3.3). "
        "The text does not say where the no-residual curve sits; here it is expected below the bottleneck shortcut."),
    model="mobilenet_v2",
    variants={
        "bottleneck": {"model_kwargs.shortcut": "bottleneck"},
        "expansion": {"model_kwargs.shortcut": "expansion"},
        "none": {"model_kwargs.shortcut": "none"},
    },
    claims=[Claim("bottleneck", "expansion", None, "Fig. 6b: curves only"),
            Claim("bottleneck", "none", None, "the text does not place the no-residual curve")],
    # Width 1.0 as in the paper (see v2_bottleneck), to a plateau.
    cpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9}},
    gpu_overrides={"image_size": 96},
    runtime=("about 1.5-2 hours on 2 CPU cores (3 variants x 5 seeds at width 1.0, 32x32, each to its plateau; the "
             "bottleneck-shortcut runs are v2_bottleneck's linear runs, shared when those exist)"),
    limits=(
        "The bottleneck-shortcut variant is the same network as Fig. 6a's linear bottleneck: its runs are shared "
        "with v2_bottleneck (each run's final.json says so), so the two reports are not independent. The paper "
        "gives curves only, so no size can be compared."),
    labels={"bottleneck": "shortcut between bottlenecks (paper)", "expansion": "shortcut between expansions",
            "none": "no residual"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
