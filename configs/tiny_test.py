"""The smallest real run, for tests and smoke checks: MobileNetV2 width 0.35 at 32x32 on a
few hundred embedded images, a handful of steps, float32, no progress bar."""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=0.35, dropout_rate=0.0, bn_momentum=0.9)
    c.dtype = "float32"
    c.dataset = "embedded"
    c.image_size = 32
    c.embedded_num_train = 256
    c.embedded_num_eval = 40
    c.batch_size = 16
    c.eval_batch_size = 16  # 40 = 2.5 batches: the last one is padded and masked
    c.num_train_steps = 6
    c.optimizer = "rmsprop"
    c.learning_rate = 0.01
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.9
    c.lr_decay_epochs = 0.25
    c.warmup_steps = 2
    c.weight_decay = 4e-5
    c.weight_decay_exclude_depthwise = True
    c.label_smoothing = 0.1
    c.ema_decay = 0.99
    c.log_every_steps = 1
    c.eval_every_steps = 3
    c.checkpoint_every_steps = 2
    c.keep_checkpoints = 2
    c.progress_bar = False
    c.tensorboard = False
    return c
