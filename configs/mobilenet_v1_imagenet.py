"""MobileNetV1 1.0-224 on ImageNet (MobileNets Sec. 3.2; docs/papers.md "Training recipes").

The paper: TF RMSProp, asynchronous, "similar to Inception V3", little augmentation, no
label smoothing, very little or no weight decay on depthwise filters. Values the paper does
not give are Inception V3's (lr 0.045 x 0.94 every 2 epochs) and TF-slim's (RMSProp
epsilon 1.0, weight decay 4e-5, batch 96 per worker). For a large synchronous batch, set
lr_base_batch_size=96 to scale the learning rate linearly and add warmup.
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v1"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.001, bn_momentum=0.9997)
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.batch_size = 96 * 8
    c.lr_base_batch_size = 96
    c.learning_rate = 0.045
    c.warmup_epochs = 2.0
    c.num_epochs = 200.0
    c.optimizer = "rmsprop"
    c.rmsprop_decay = 0.9
    c.momentum = 0.9
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.94
    c.lr_decay_epochs = 2.0
    c.weight_decay = 4e-5
    c.weight_decay_exclude_depthwise = True
    c.label_smoothing = 0.0
    c.log_every_steps = 100
    return c
