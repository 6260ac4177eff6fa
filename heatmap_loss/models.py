"""The classifier of the thesis and the model that trains it with the heatmap loss.

Classifier (thesis, section 2.6.1): VGG16 without its top, then a fully connected
layer of 100 units and one of 4 units with a softmax. Here the last layer outputs
logits and the softmax is applied by `HeatmapLossModel.call`, so that HiResCAM uses
the gradient of the class logit (Draelos & Carin, 2020) while predictions are the
softmax probabilities as in the thesis.

`HeatmapLossModel` wraps the classifier. Its `train_step` runs one forward pass that
returns both predictions and the HiResCAM (or Grad-CAM) map of each image's TRUE
class (`shared.explain.forward_with_maps`) and minimises

    L = L_cls(y, softmax(z)) + weight * mean_b penalty_b

with `L_cls` the mean squared error of the thesis (or cross-entropy) and `penalty`
from `heatmap_loss.losses.attribution_penalty`. With `weight=0` it is an ordinary
classifier (the CCE group of the experiments) and skips the maps while training.

Inputs: `x = (images, masks)`, `y` = integer class labels. `images` [B, H, W, 1]
(raw intensities, rescaled inside the classifier), `masks` [B, H, W] binary (the
allowed region, e.g. the heart). `predict` takes images alone.
"""

import numpy as np

import keras
import tensorflow as tf

from heatmap_loss.losses import MODES, attribution_penalty
from shared.backbones.vgg import VGG16_FILTERS, vgg16_backbone
from shared.explain import METHODS, feature_model, forward_with_maps
from shared.training.scale import scale_for_replicas, skip_together

CLASSIFICATION_LOSSES = ("mse", "cce")
PREPROCESSING = ("unit", "vgg16")
# Keras' VGG16 `preprocess_input` ("caffe" mode): ImageNet means of B, G, R (0-255).
VGG16_BGR_MEANS = (103.939, 116.779, 123.68)


def build_classifier(input_shape, *, num_classes=4, filters=VGG16_FILTERS, dense_units=100,
                     weights=None, rgb=None, kernel_initializer="glorot_uniform",
                     preprocessing=None, name="vgg16_classifier") -> keras.Model:
    """VGG16 (no top) + Dense(dense_units, relu) + Dense(num_classes) logits.

    Args:
        input_shape: tuple (height, width, 1). Grey images, raw intensities 0-255.
        num_classes: int, default 4.
        filters: tuple of 5 ints, default (64, 128, 256, 512, 512). VGG16 widths.
        dense_units: int, default 100 (thesis).
        weights: None, "imagenet" or a weights-file path for the backbone.
        rgb: bool, optional. Repeat the grey channel three times before the
            backbone (needed for ImageNet weights). Default: True only with
            `weights="imagenet"`.
        kernel_initializer: str, default "glorot_uniform" (Keras' VGG16). Initializer
            of the backbone's and the head's kernels when training from scratch.
        preprocessing: str, optional. "unit": intensities divided by 255 (training
            from scratch); "vgg16": Keras' VGG16 preprocessing of the ImageNet
            weights (`keras.applications.vgg16.preprocess_input`, "caffe" mode: the
            grey image repeated to RGB, channels in BGR order, ImageNet channel means
            subtracted, no scaling). Default: "vgg16" with `weights="imagenet"`,
            else "unit".
        name: str. Model name.

    Returns:
        A functional keras.Model; the backbone is the nested model "vgg16" whose
        last convolution is "block5_conv3".
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 1:
        raise ValueError(f"input_shape must be (height, width, 1). Received: input_shape={input_shape}")
    imagenet = isinstance(weights, str) and weights == "imagenet"
    if preprocessing is None:
        preprocessing = "vgg16" if imagenet else "unit"
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}. "
                         f"Received: preprocessing={preprocessing!r}")
    if rgb is None:
        rgb = imagenet or preprocessing == "vgg16"
    if preprocessing == "vgg16" and not rgb:
        raise ValueError("preprocessing='vgg16' needs three channels. Received: rgb=False")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if preprocessing == "unit":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    channels = 1
    if rgb:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
        channels = 3
    if preprocessing == "vgg16":
        # RGB -> BGR is a no-op on a repeated grey channel; the means are in BGR order.
        x = keras.layers.Normalization(mean=list(VGG16_BGR_MEANS), variance=[1.0, 1.0, 1.0],
                                       name="vgg16_preprocess")(x)
    backbone = vgg16_backbone(input_shape[:2] + (channels,), weights=weights, filters=filters,
                              kernel_initializer=kernel_initializer)
    x = backbone(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", kernel_initializer=kernel_initializer,
                           name="fc")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def validate_training_arrays(images, masks, labels, *, num_classes, region="allowed"):
    """Checks arrays for training/evaluating a `HeatmapLossModel`.

    Args:
        images: array [N, H, W] or [N, H, W, C].
        masks: array [N, H, W] or [N, H, W, 1], binary region per image.
        labels: int array [N] or None.
        num_classes: int.
        region: str, "allowed" or "required"; used in messages.

    Raises:
        ValueError: naming the first offending sample index: different sample
            counts, masks whose grid differs from the images', NaN or infinite
            pixels, labels outside [0, num_classes), empty regions.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C]. Received shape {images.shape}")
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W] or [N, H, W, 1]. Received shape {masks.shape}")
    if masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"masks has {masks.shape[0]} samples but images has {images.shape[0]}; "
            f"sample index {min(masks.shape[0], images.shape[0])} has no partner."
        )
    if masks.shape[1:3] != images.shape[1:3]:
        raise ValueError(
            f"masks of {masks.shape[1:3]} pixels do not match images of "
            f"{images.shape[1:3]} pixels (from sample index 0)."
        )
    if np.issubdtype(images.dtype, np.floating):
        finite = np.isfinite(images.reshape(images.shape[0], -1)).all(axis=1)
        if not finite.all():
            raise ValueError(f"images: sample index {int(np.argmin(finite))} contains NaN or infinite pixels.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must be one integer per image, shape ({images.shape[0]},). "
                f"Received shape {labels.shape}"
            )
        bad = (labels < 0) | (labels >= num_classes) | (labels != np.round(labels))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"labels: sample index {i} has label {labels[i].item()!r}; expected an integer "
                f"in [0, {num_classes})."
            )
    empty = masks.reshape(masks.shape[0], -1).max(axis=1) <= 0
    if empty.any():
        raise ValueError(
            f"masks: sample index {int(np.argmax(empty))} has an empty {region} region "
            "(no pixel is 1)."
        )


@keras.saving.register_keras_serializable(package="medrepro")
class HeatmapLossModel(keras.Model):
    """A classifier trained with classification loss + weighted attribution penalty.

    Args:
        classifier: keras.Model mapping images to class logits.
        cam_layer: str, default "block5_conv3". The layer whose activations the
            attribution maps use (found inside nested models).
        weight: float, default 1.0. Weight of the attribution penalty; 0 trains
            with the classification loss alone.
        method: str, default "hirescam" (thesis) or "gradcam".
        mode: str, default "outside": penalise the share of the map outside the
            allowed region (the heart); "inside": penalise attribution missing
            from a required region (see `heatmap_loss.losses`).
        classification_loss: str, default "mse" (thesis: mean squared error
            between the one-hot label and the softmax) or "cce" (cross-entropy).
        **kwargs: passed to keras.Model (name, ...).

    Example:
        >>> model = HeatmapLossModel(build_classifier((105, 135, 1)), weight=1.0)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-5))
        >>> model.fit((images, heart_masks), labels, epochs=5)
        >>> probabilities = model.predict(images)
    """

    def __init__(self, classifier, *, cam_layer="block5_conv3", weight=1.0, method="hirescam",
                 mode="outside", classification_loss="mse", **kwargs):
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        if classification_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(
                f"classification_loss must be one of {CLASSIFICATION_LOSSES}. "
                f"Received: classification_loss={classification_loss!r}"
            )
        if not float(weight) >= 0.0:
            raise ValueError(f"weight must be >= 0. Received: weight={weight!r}")
        self.classifier = classifier
        self.cam_layer = cam_layer
        self.weight = float(weight)
        self.method = method
        self.mode = mode
        self.classification_loss = classification_loss
        self.num_classes = int(classifier.output_shape[-1])
        self._feature_model = feature_model(classifier, cam_layer)
        self.built = True
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cls_tracker = keras.metrics.Mean(name="classification_loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # ----------------------------------------------------------------- forward
    def call(self, inputs, training=False):
        images = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        return tf.nn.softmax(self.classifier(images, training=training), axis=-1)

    @property
    def metrics(self):
        return [self.loss_tracker, self.cls_tracker, self.penalty_tracker, self.accuracy_tracker]

    def _unpack_batch(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError(
                "HeatmapLossModel trains on x=(images, masks) and y=labels. "
                f"Received x of type {type(x).__name__}"
            )
        images, masks = x
        if len(masks.shape) == 4:
            masks = masks[..., 0]
        if masks.shape[1:3] != images.shape[1:3] and None not in masks.shape[1:3]:
            raise ValueError(
                f"masks of {tuple(masks.shape[1:3])} pixels do not match images of "
                f"{tuple(images.shape[1:3])} pixels."
            )
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        return images, masks, y, sample_weight

    def _classification_loss(self, y, probabilities):
        if self.classification_loss == "mse":
            one_hot = tf.one_hot(y, self.num_classes, dtype=probabilities.dtype)
            return tf.reduce_mean(tf.square(one_hot - probabilities), axis=-1)
        return keras.losses.sparse_categorical_crossentropy(y, probabilities)

    def _heatmap_losses(self, images, masks, y, sample_weight, training, with_maps):
        if with_maps:
            logits, maps = forward_with_maps(self._feature_model, images, y, method=self.method,
                                             training=training)
            penalty = attribution_penalty(maps, masks, mode=self.mode)
        else:
            logits, penalty = self.classifier(images, training=training), None
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        cls = self._classification_loss(y, probabilities)
        if sample_weight is None:
            sw = tf.ones_like(cls)
        else:
            sw = tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
        denominator = tf.maximum(tf.reduce_sum(sw), 1e-8)
        cls_mean = tf.reduce_sum(cls * sw) / denominator
        total = cls_mean
        pen_mean = None
        if penalty is not None:
            pen_mean = tf.reduce_sum(penalty * sw) / denominator
            total = total + self.weight * pen_mean
        return total, cls_mean, pen_mean, probabilities, sw

    def _log_step(self, total, cls_mean, pen_mean, y, probabilities, sw):
        self.loss_tracker.update_state(total)
        self.cls_tracker.update_state(cls_mean)
        if pen_mean is not None:
            self.penalty_tracker.update_state(pen_mean)
        self.accuracy_tracker.update_state(y, probabilities, sample_weight=sw)
        logs = {m.name: m.result() for m in self.metrics}
        if pen_mean is None:
            logs.pop("penalty")
        return logs

    def train_step(self, data):
        images, masks, y, sample_weight = self._unpack_batch(data)
        with_maps = self.weight > 0.0
        with tf.GradientTape() as tape:
            total, cls_mean, pen_mean, probabilities, sw = self._heatmap_losses(
                images, masks, y, sample_weight, True, with_maps)
            # The optimizer sums the replicas' gradients under a distribution strategy;
            # scale_loss applies the loss scale of mixed precision.
            scaled = self.optimizer.scale_loss(scale_for_replicas(total))
        gradients = skip_together(self.optimizer,
                                  tape.gradient(scaled, self.trainable_variables))
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._log_step(total, cls_mean, pen_mean, y, probabilities, sw)

    def test_step(self, data):
        # Always with maps: validation reports the penalty for both groups.
        images, masks, y, sample_weight = self._unpack_batch(data)
        total, cls_mean, pen_mean, probabilities, sw = self._heatmap_losses(
            images, masks, y, sample_weight, False, True)
        return self._log_step(total, cls_mean, pen_mean, y, probabilities, sw)

    # ------------------------------------------------------------ validation
    def _check_arrays(self, x, y):
        if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(a, np.ndarray) for a in x):
            validate_training_arrays(x[0], x[1], y, num_classes=self.num_classes,
                                     region="allowed" if self.mode == "outside" else "required")

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`, checking NumPy inputs first (see `validate_training_arrays`)."""
        self._check_arrays(x, y)
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            self._check_arrays(validation_data[0], validation_data[1])
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`, checking NumPy inputs first."""
        self._check_arrays(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update({
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "cam_layer": self.cam_layer,
            "weight": self.weight,
            "method": self.method,
            "mode": self.mode,
            "classification_loss": self.classification_loss,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
        return cls(classifier, **config)
