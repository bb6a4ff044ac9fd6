"""MobileNetV3-Large or -Small 1.0-224 on ImageNet (Searching for MobileNetV3 Sec. 6.1.1 gives one
setup for both). The argument names the size: `--config configs/mobilenet_v3_imagenet.py:small`;
without one, large.

The paper: synchronous on a 4x4 TPU pod, TF RMSPropOptimizer momentum 0.9, lr 0.1 at batch
4096 (128 per chip), "decay rate of 0.01 every 3 epochs" (read as x0.99 every 3 epochs: a
x0.01 step would end training after 3 epochs), dropout 0.8 (a keep probability: rate 0.2),
L2 weight decay 1e-5, Inception preprocessing, EMA 0.9999, BN moving-average decay 0.99.
Epoch count and warmup are not given.
"""
from mobilenet_jax.train.config import ConfigError, default_config

SIZES = ("large", "small")


def get_config(size: str = "large"):
    if size not in SIZES:
        raise ConfigError(f"configs/mobilenet_v3_imagenet.py:{size}: the argument is one of {', '.join(SIZES)}")
    c = default_config()
    c.model = f"mobilenet_v3_{size}"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.2, bn_momentum=0.99)
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.batch_size = 4096
    c.learning_rate = 0.1
    c.num_epochs = 350.0
    c.optimizer = "rmsprop"
    c.rmsprop_decay = 0.9
    c.momentum = 0.9
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.99
    c.lr_decay_epochs = 3.0
    c.lr_staircase = True
    c.weight_decay = 1e-5
    c.ema_decay = 0.9999
    c.log_every_steps = 100
    return c
