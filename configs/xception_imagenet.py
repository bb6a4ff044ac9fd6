"""Xception at 299 on ImageNet (Xception Secs. 4.2-4.4).

The paper: synchronous SGD on 60 K80 GPUs, momentum 0.9, lr 0.045 decayed x0.94 every 2
epochs, weight decay 1e-5, dropout 0.5 before the logistic layer, Polyak averaging at
inference (EMA here, decay 0.9999). The batch size and epoch count are not given.
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "xception"
    c.model_kwargs = dict(dropout_rate=0.5, bn_momentum=0.99)
    c.dataset = "imagenet2012"
    c.image_size = 299
    c.batch_size = 1024
    c.learning_rate = 0.045
    c.num_epochs = 100.0
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.nesterov = False
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.94
    c.lr_decay_epochs = 2.0
    c.lr_staircase = True
    c.weight_decay = 1e-5
    c.ema_decay = 0.9999
    c.log_every_steps = 100
    return c
