"""Xception Fig. 9 (Sec. 4.7): with vs without residual connections.

``python -m experiments.xception_residual`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main
from experiments.common import Claim

ABLATION = Ablation(
    name="xception_residual",
    title="Xception Fig. 9 — residual connections",
    paper_claim=(
        "Residual connections help Xception a lot: on ImageNet the version without them converges much more slowly "
        "and ends clearly lower (Fig. 9, Sec. 4.7), although the paper notes residuals are not required to build "
        "deep separable-convolution stacks."),
    model="xception",
    variants={"residual": {"model_kwargs.residual": True}, "no_residual": {"model_kwargs.residual": False}},
    claims=[Claim("residual", "no_residual", None, "Fig. 9: curves only"),
            Claim("residual", "no_residual", None, "Fig. 9: \"speed\" of convergence", metric="speed")],
    cpu_overrides={"model_kwargs": {"width": 0.25, "dropout_rate": 0.0, "bn_momentum": 0.9},
                   "image_size": 32, "num_train_steps": 800},
    gpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9}, "image_size": 96,
                   "num_train_steps": 5000},
    runtime=("about 40-55 minutes on 2 CPU cores (2 variants x 5 seeds x 800 steps, Xception width 0.25 at 32x32; "
             "the committed runs took 2.6-3.7 min each for 500 steps)"),
    limits=(
        "The paper gives curves only, so no size can be compared. The non-residual network trains with the "
        "residual one's optimizer settings, which the paper itself calls possibly 'uncharitable'; at this step "
        "count a non-flat no-residual curve says it learns slower, not where it would end."),
    labels={"residual": "Xception (residual, paper)", "no_residual": "Xception, no residual"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
