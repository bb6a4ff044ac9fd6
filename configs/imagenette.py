"""MobileNetV2 on Imagenette (10 ImageNet classes) at 128x128: ImageNet preprocessing and
the V2 optimizer at a scale one GPU trains in minutes. Not a paper recipe."""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.2, bn_momentum=0.99)
    c.dataset = "imagenette"
    c.image_size = 128
    c.batch_size = 128
    c.num_epochs = 60.0
    c.optimizer = "rmsprop"
    c.momentum = 0.9
    c.learning_rate = 0.016
    c.warmup_epochs = 2.0
    c.lr_schedule = "cosine"
    c.weight_decay = 4e-5
    c.ema_decay = 0.999
    c.label_smoothing = 0.1
    return c
