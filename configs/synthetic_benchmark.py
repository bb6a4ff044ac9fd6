"""Training throughput on synthetic tensors kept on device (no input pipeline, no TF):
MobileNetV2 1.0-224, bfloat16 compute, global batch 256, 200 steps, no evaluation.

python -m mobilenet_jax.train --config configs/synthetic_benchmark.py --workdir /tmp/bench
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.2)
    c.dtype = "bfloat16"
    c.dataset = "synthetic"
    c.image_size = 224
    c.batch_size = 256
    c.num_train_steps = 200
    c.num_eval_steps = 0
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 0
    c.keep_best_checkpoint = False
    c.optimizer = "rmsprop"
    c.learning_rate = 0.045
    c.lr_schedule = "constant"
    c.log_every_steps = 20
    c.tensorboard = False
    return c
