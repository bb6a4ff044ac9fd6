"""MobileNetV2 Fig. 6b (Sec. 6.4): shortcut between bottlenecks vs between expansions vs no residual.

``python -m experiments.v2_shortcut`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main

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
    expect=[("bottleneck", "expansion"), ("bottleneck", "none")],
    cpu_overrides={"num_train_steps": 600},
    runtime="about 10-14 minutes on 2 CPU cores (3 variants x 2 seeds x 600 steps; 13.7 min measured with a second sweep sharing the cores)",
    labels={"bottleneck": "shortcut between bottlenecks (paper)", "expansion": "shortcut between expansions",
            "none": "no residual"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
