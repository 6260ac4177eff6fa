"""A model with a custom train_step (its own extra loss term), for the scale tests."""

import keras
import numpy as np
import tensorflow as tf

from shared.training.scale import as_float32, gather_across_replicas, scale_for_replicas


class PenalisedRegressor(keras.Model):
    """MSE plus an activity penalty computed in the train_step (like an attribution penalty)."""

    def __init__(self, penalty=0.1, **kwargs):
        super().__init__(**kwargs)
        self.penalty = penalty
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(1)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.batch_tracker = keras.metrics.Mean(name="global_rows")

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    @property
    def metrics(self):
        return [self.loss_tracker, self.batch_tracker]

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            h = self.hidden(x, training=True)
            pred = as_float32(self.out(h))
            mse = tf.reduce_mean(tf.square(pred - tf.cast(y, tf.float32)))
            activity = tf.reduce_mean(tf.square(as_float32(h)))
            loss = scale_for_replicas(mse + self.penalty * activity)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(mse + self.penalty * activity)
        rows = tf.shape(gather_across_replicas(x))[0]
        self.batch_tracker.update_state(tf.cast(rows, tf.float32))
        return {m.name: m.result() for m in self.metrics}


def build(precision):
    model = PenalisedRegressor()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build((None, 4))
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype="float32"))[:, None]
    return x, y
