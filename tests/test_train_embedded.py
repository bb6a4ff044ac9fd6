"""The README's embedded run learns: MobileNetV2-0.35 on the embedded shapes, through the
trainer's command line, on the CPU. configs/embedded.py shortened (same recipe, fewer steps,
the cosine schedule compressed to them) must reach a stated eval accuracy; chance is 10%.

It runs in a subprocess at XLA's default optimisation level: the suite-wide level 0
(conftest) compiles faster but runs this 400-step training ~3x slower."""
import os
import subprocess
import sys

from mobilenet_jax.train import read_metrics
from tests.conftest import TEST_CACHE_DIR
from tests._train_helpers import REPO

STEPS = 400
#: Measured 0.296 (eval loss 1.91) after these 400 steps on a 2-core CPU, 0.345 when compiled
#: at optimisation level 0: early training amplifies rounding differences, so the margin is
#: wide (twice chance). The full config reaches 0.978 in 1,560 steps (README).
MIN_EVAL_ACCURACY = 0.20


def test_mobilenet_v2_learns_the_embedded_shapes(tmp_path):
    overrides = {
        "num_train_steps": STEPS, "embedded_num_train": 8_000, "embedded_num_eval": 1_000,
        "warmup_steps": 40, "eval_every_steps": 0, "checkpoint_every_steps": 0,
        "num_devices": 1, "progress_bar": False, "tensorboard": False,
        "compilation_cache_dir": TEST_CACHE_DIR,
    }
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "mobilenet_jax.train", f"--config={REPO}/configs/embedded.py",
         f"--workdir={tmp_path}", *[f"--config.{k}={v}" for k, v in overrides.items()]],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (final,) = read_metrics(str(tmp_path), "eval")
    assert final["step"] == STEPS and final["num_examples"] == 1_000
    assert final["accuracy"] >= MIN_EVAL_ACCURACY, final
    assert final["loss"] < 2.302  # below chance-level cross-entropy, ln(10)
