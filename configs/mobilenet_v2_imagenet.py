"""MobileNetV2 1.0-224 on ImageNet (MobileNetV2 Sec. 6.1).

The paper: TF RMSPropOptimizer, decay = momentum = 0.9, weight decay 4e-5, lr 0.045
decayed x0.98 per epoch, batch 96 on each of 16 asynchronous GPU workers, BN everywhere,
dropout (rate not given; 0.2 as Keras/TF-slim). Synchronous here: the global batch is
96 x 16 = 1536 with the lr scaled linearly from 96 (lr_base_batch_size) after a warmup
(not in the paper: large synchronous batches need it). Epoch count not given (TF-slim
trained ~300 epochs).
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=1.0, dropout_rate=0.2, bn_momentum=0.997)
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.batch_size = 96 * 16
    c.lr_base_batch_size = 96
    c.learning_rate = 0.045
    c.warmup_epochs = 5.0
    c.num_epochs = 300.0
    c.optimizer = "rmsprop"
    c.rmsprop_decay = 0.9
    c.momentum = 0.9
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.98
    c.lr_decay_epochs = 1.0
    c.lr_staircase = True
    c.weight_decay = 4e-5
    c.label_smoothing = 0.0
    c.log_every_steps = 100
    return c
