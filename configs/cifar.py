"""MobileNetV2 on CIFAR-10 or CIFAR-100 at 32x32 (a small-data recipe for ablations, not from
a paper): SGD + Nesterov, cosine, 200 epochs, batch 128. Note that the ImageNet network
reduces 32x32 inputs to 1x1 features; use image_size=64 or more for stronger results.

The argument names the data set: `--config configs/cifar.py:cifar100`; without one, cifar10.
"""
from mobilenet_jax.train.config import ConfigError, default_config

DATASETS = ("cifar10", "cifar100")


def get_config(dataset: str = "cifar10"):
    if dataset not in DATASETS:
        raise ConfigError(f"configs/cifar.py:{dataset}: the argument is one of {', '.join(DATASETS)}")
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.2, bn_momentum=0.9)
    c.dataset = dataset
    c.image_size = 32
    c.batch_size = 128
    c.num_epochs = 200.0
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.nesterov = True
    c.learning_rate = 0.1
    c.lr_schedule = "cosine"
    c.warmup_epochs = 1.0
    c.weight_decay = 4e-5
    c.label_smoothing = 0.1
    c.cache = True
    c.shuffle_buffer = 50_000
    return c
