"""MobileNetV1 Table 4: full vs depthwise-separable convolutions at the reference width.

``python -m experiments.v1_full_conv`` (see ``--help`` for runtime and full-scale options). The
ablation is defined beside the rest of V1's in experiments/v1_tradeoffs.py.
"""
from mobilenet_jax import cli
from experiments.ablation import main
from experiments.v1_tradeoffs import FULL_CONV

ABLATION = FULL_CONV

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
