"""Training both nets: per-epoch class balancing, pair generation, three-way validation.

Section 3.1: every epoch takes all COVID-19 training images and an equal random draw
of normal and pneumonia images (`shared.pipeline.balanced_indices`). The single net
trains on that balanced subset; the siamese net on pairs drawn from it, half of them
from the same class and half from different classes (5,000 pairs per epoch in the
grid search, 12,000 in the final run).

Section 3.2.1: the siamese net is validated by three-way trials (Koch et al. 2015):
a query image is compared with one reference image of each class and gets the class
of the most similar one; the validation accuracy is the share of correct trials
(129 trials). Section 3.2.2: at test time each class is represented by its template,
the mean training embedding, and a test image gets the class of the most similar
template. Similarity = the siamese output (label convention 1 = same class; see
`covidnet_siamese.models`).
"""

import logging
import time

import keras
import numpy as np

from covidnet_siamese.config import CLASS_NAMES, SIAMESE_SELECTION, SINGLE_SELECTION
from covidnet_siamese.models import build_siamese_net, build_single_net, similarity_from_embeddings
from shared.training.inference import predict_in_chunks
from shared.training.seeding import numpy_rng

log = logging.getLogger(__name__)

NUM_CLASSES = len(CLASS_NAMES)
COVID = CLASS_NAMES.index("COVID-19")


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------
def epoch_indices(labels, rng):
    """All COVID-19 images plus an equal random draw of each other class, shuffled."""
    from shared.data.pipeline import balanced_indices

    return balanced_indices(labels, rng=rng, minority_class=COVID)


def make_pairs(labels, n_pairs, rng, indices=None):
    """Draws `n_pairs` image pairs, half from the same class and half from different ones.

    Same-class pairs pick a class uniformly, then two distinct images of it; pairs of
    different classes pick two distinct classes uniformly, then one image of each. With
    an odd `n_pairs` the extra pair is a same-class one.

    Args:
        labels: int array [N] of class indices.
        n_pairs: int. Pairs to draw.
        rng: np.random.Generator or int seed.
        indices: int array, optional. Restrict the draw to these images (the epoch's
            balanced subset); default all.

    Returns:
        (first, second, same): int arrays [n_pairs] of image indices and float32 [n_pairs]
        labels, 1.0 = same class, shuffled.
    """
    rng = numpy_rng(rng)
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if indices is None else np.asarray(indices)
    by_class = {c: pool[labels[pool] == c] for c in np.unique(labels[pool])}
    same_ok = [c for c, idx in by_class.items() if len(idx) >= 2]
    if not same_ok or len(by_class) < 2:
        raise ValueError("make_pairs needs at least two classes and one class with two images. "
                         f"Received class sizes: { {int(c): len(i) for c, i in by_class.items()} }")
    n_same = n_pairs - n_pairs // 2
    n_diff = n_pairs // 2
    first, second = [], []
    for c in rng.choice(same_ok, size=n_same):
        a, b = rng.choice(by_class[c], size=2, replace=False)
        first.append(a)
        second.append(b)
    classes = np.asarray(sorted(by_class))
    for _ in range(n_diff):
        ca, cb = rng.choice(classes, size=2, replace=False)
        first.append(rng.choice(by_class[ca]))
        second.append(rng.choice(by_class[cb]))
    same = np.concatenate([np.ones(n_same, np.float32), np.zeros(n_diff, np.float32)])
    order = rng.permutation(n_pairs)
    return np.asarray(first, np.int64)[order], np.asarray(second, np.int64)[order], same[order]


def _epoch_batches(draw, batch_size):
    """Endless generator of batches: `draw()` gives one epoch's index arrays, which are
    cut into batches of `batch_size` (the last batch of an epoch may be shorter)."""
    while True:
        arrays = draw()
        for start in range(0, len(arrays[0]), batch_size):
            yield tuple(a[start:start + batch_size] for a in arrays)


def balanced_image_dataset(x, y, *, batch_size, seed):
    """The single net's training data as a `tf.data.Dataset` and its steps per epoch.

    Every epoch is a new balanced subset (`epoch_indices`) in its drawn order, cut into
    batches that never cross an epoch; served by a generator rather than a Keras
    `PyDataset`, whose per-step machinery cost more than the step on small images.
    """
    import tensorflow as tf

    rng, y = numpy_rng(seed), np.asarray(y)
    steps = int(np.ceil(len(epoch_indices(y, numpy_rng(0))) / batch_size))  # every epoch has one size

    def batches():
        for (idx,) in _epoch_batches(lambda: (epoch_indices(y, rng),), batch_size):
            yield x[idx], y[idx]

    spec = (tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype)), tf.TensorSpec((None,), tf.as_dtype(y.dtype)))
    return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(2), steps


def balanced_pair_dataset(x, y, *, n_pairs, batch_size, seed):
    """The siamese net's training pairs as a `tf.data.Dataset` and its steps per epoch:
    `n_pairs` pairs (`make_pairs`) redrawn from a new balanced subset every epoch."""
    import tensorflow as tf

    rng, y = numpy_rng(seed), np.asarray(y)

    def draw():
        return make_pairs(y, n_pairs, rng, indices=epoch_indices(y, rng))

    def batches():
        for first, second, same in _epoch_batches(draw, batch_size):
            yield (x[first], x[second]), same

    image = tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype))
    spec = ((image, image), tf.TensorSpec((None,), tf.float32))
    return (tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(2),
            int(np.ceil(n_pairs / batch_size)))


# ---------------------------------------------------------------------------
# Three-way validation and templates
# ---------------------------------------------------------------------------
def three_way_trials(labels, n_trials, rng):
    """Draws `n_trials` three-way trials (Section 3.2.1).

    Trial t queries an image of class t mod 3 (so the classes are equally represented)
    and takes one random reference image of every class, never the query itself.

    Returns:
        (queries [T], references [T, 3], query_classes [T]) as int arrays.
    """
    rng = numpy_rng(rng)
    labels = np.asarray(labels)
    by_class = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
    for c, idx in enumerate(by_class):
        if len(idx) < 2:
            raise ValueError(f"three-way validation needs at least 2 images of every class; "
                             f"class {CLASS_NAMES[c]!r} has {len(idx)}")
    queries, refs, classes = [], [], []
    for t in range(n_trials):
        q_class = t % NUM_CLASSES
        q = rng.choice(by_class[q_class])
        row = []
        for c in range(NUM_CLASSES):
            candidates = by_class[c] if c != q_class else by_class[c][by_class[c] != q]
            row.append(rng.choice(candidates))
        queries.append(q)
        refs.append(row)
        classes.append(q_class)
    return np.asarray(queries), np.asarray(refs), np.asarray(classes)


def three_way_accuracy(similarity, embeddings, trials):
    """Share of three-way trials whose most similar reference has the query's class.

    Args:
        similarity: callable (emb_a [T, D], emb_b [T, D]) -> [T] similarities.
        embeddings: array [N, D] of every image's embedding.
        trials: output of `three_way_trials`.

    Returns:
        float accuracy in [0, 1].
    """
    queries, refs, classes = trials
    emb = np.asarray(embeddings)
    scores = np.stack([np.asarray(similarity(emb[queries], emb[refs[:, c]])) for c in range(refs.shape[1])],
                      axis=1)
    return float(np.mean(np.argmax(scores, axis=1) == classes))


def class_templates(embeddings, labels, num_classes=NUM_CLASSES):
    """Mean embedding per class (Section 3.2.2): array [num_classes, D]."""
    embeddings, labels = np.asarray(embeddings), np.asarray(labels)
    templates = []
    for c in range(num_classes):
        members = embeddings[labels == c]
        if len(members) == 0:
            raise ValueError(f"no training embedding of class {c} ({CLASS_NAMES[c]!r}) to build its template")
        templates.append(members.mean(axis=0))
    return np.stack(templates).astype(np.float32)


def template_similarities(siamese, embeddings, templates):
    """Similarity of every embedding [N, D] to every template [C, D]: array [N, C]."""
    embeddings = np.asarray(embeddings, np.float32)
    cols = []
    for c in range(len(templates)):
        tiled = np.repeat(templates[c:c + 1], len(embeddings), axis=0)
        cols.append(keras.ops.convert_to_numpy(similarity_from_embeddings(siamese, embeddings, tiled)))
    return np.stack(cols, axis=1)


def siamese_similarity_fn(siamese):
    """A NumPy similarity function (emb_a, emb_b) -> [T] from a siamese model's head."""
    def similarity(a, b):
        return keras.ops.convert_to_numpy(similarity_from_embeddings(
            siamese, np.asarray(a, np.float32), np.asarray(b, np.float32)))
    return similarity


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------
class ThreeWayValidation(keras.callbacks.Callback):
    """Adds `val_three_way_accuracy` (and `three_way_accuracy` on training images) to the logs.

    Trials are drawn once, so every epoch is scored on the same trials.
    """

    def __init__(self, x_val, y_val, *, n_trials, seed, x_train=None, y_train=None, batch_size=64):
        super().__init__()
        rng = numpy_rng(seed)
        self.sets = {"val_three_way_accuracy": (x_val, three_way_trials(y_val, n_trials, rng))}
        if x_train is not None:
            self.sets["three_way_accuracy"] = (x_train, three_way_trials(y_train, n_trials, rng))
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        twin = self.model.get_layer("twin")
        for key, (x, trials) in self.sets.items():
            used = np.unique(np.concatenate([trials[0], trials[1].ravel()]))
            emb = np.zeros((len(x), twin.output.shape[-1]), np.float32)
            emb[used] = predict_in_chunks(twin, x[used])
            logs[key] = three_way_accuracy(siamese_similarity_fn(self.model), emb, trials)


def predicted_classes(model, x):
    """Argmax class of the single net's softmax on images x, in inference mode: int array [N]."""
    return np.argmax(predict_in_chunks(model, x), axis=1) if len(x) else np.zeros(0, np.int64)


def decision_scores(y_true, y_pred) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes) and the largest share
    of images given one class, of one decision rule's predictions."""
    from shared.metrics import balanced_accuracy

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {"accuracy": float(np.mean(y_true == y_pred)),
            "balanced_accuracy": balanced_accuracy(y_true, y_pred),
            "largest_class_share": float(np.max(np.bincount(y_pred, minlength=NUM_CLASSES)) / max(len(y_pred), 1))}


class SingleValidation(keras.callbacks.Callback):
    """Adds the single net's `val_balanced_accuracy` and `val_largest_class_share` on the
    whole validation split to the logs (Keras adds `val_accuracy` itself).

    Balanced accuracy does not reward the majority class: an epoch that calls every
    film "normal" scores 1/3 whatever the class shares.
    """

    def __init__(self, x_val, y_val):
        super().__init__()
        self.x_val, self.y_val = x_val, np.asarray(y_val)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        probs = predict_in_chunks(self.model, self.x_val)
        scores = decision_scores(self.y_val, np.argmax(probs, axis=1))
        picked = probs[np.arange(len(self.y_val)), self.y_val]
        logs["val_loss"] = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
        logs["val_accuracy"] = scores["accuracy"]
        logs["val_balanced_accuracy"] = scores["balanced_accuracy"]
        logs["val_largest_class_share"] = scores["largest_class_share"]


class TemplateValidation(keras.callbacks.Callback):
    """Adds the test-time decision rule of the siamese net, scored on the whole
    validation split, to the logs: templates from the training embeddings of this
    epoch, every validation film given the class of its most similar template
    (Section 3.2.2). Logs `val_template_accuracy`, `val_balanced_accuracy` and
    `val_largest_class_share`.
    """

    def __init__(self, x_train, y_train, x_val, y_val, pairs=None):
        super().__init__()
        self.x_train, self.y_train = x_train, np.asarray(y_train)
        self.x_val, self.y_val = x_val, np.asarray(y_val)
        self.pairs = pairs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        twin = self.model.get_layer("twin")
        val_embeddings = predict_in_chunks(twin, self.x_val)
        templates = class_templates(predict_in_chunks(twin, self.x_train), self.y_train)
        pred = np.argmax(template_similarities(self.model, val_embeddings, templates), axis=1)
        scores = decision_scores(self.y_val, pred)
        if self.pairs is not None:  # binary cross-entropy on fixed validation pairs (`val_loss`)
            first, second, same = self.pairs
            p = np.clip(keras.ops.convert_to_numpy(similarity_from_embeddings(
                self.model, val_embeddings[first], val_embeddings[second])), 1e-7, 1 - 1e-7)
            logs["val_loss"] = float(-np.mean(same * np.log(p) + (1 - same) * np.log(1 - p)))
        logs["val_template_accuracy"] = scores["accuracy"]
        logs["val_balanced_accuracy"] = scores["balanced_accuracy"]
        logs["val_largest_class_share"] = scores["largest_class_share"]


class KeepBest(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best `monitor` value and restores them at the end."""

    def __init__(self, monitor, mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'. Received: mode={mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best, self.best_epoch, self.best_weights = None, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"KeepBest: {self.monitor!r} is not in the epoch logs {sorted(logs or {})}")
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch = float(value), epoch
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


# ---------------------------------------------------------------------------
# Models and fits
# ---------------------------------------------------------------------------
def compile_single(model, learning_rate, jit_compile=False):
    """Adam and cross-entropy (Section 3.2)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def compile_siamese(model, learning_rate, jit_compile=False):
    """Adam and binary cross-entropy on the pair labels (1 = same class)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def new_single(config, learning_rate):
    """A compiled single net for `config` (a `CovidNetSiameseConfig`)."""
    s = config.image_size
    return compile_single(build_single_net((s, s, 1), nf=config.nf, depths=config.depths, fc_units=config.fc_units,
                                           batch_norm=config.batch_norm, bn_momentum=config.bn_momentum),
                          learning_rate, config.jit_compile)


def new_siamese(config, learning_rate):
    """A compiled siamese net for `config`."""
    s = config.image_size
    return compile_siamese(build_siamese_net((s, s, 1), nf=config.nf, depths=config.depths,
                                             embedding_dim=config.embedding_dim, batch_norm=config.batch_norm,
                                             bn_momentum=config.bn_momentum),
                           learning_rate, config.jit_compile)


def fit_single(model, data, *, batch_size, epochs, seed, callbacks=(), keep_best=True, verbose=0,
               select_on="val_accuracy"):
    """Trains the single net on per-epoch balanced subsets; validates on the whole validation set.

    Args:
        select_on: str, default "val_accuracy" (the paper's). The epoch kept with
            `keep_best`: "val_accuracy" or "val_balanced_accuracy" (mean recall over the
            classes, which does not reward calling every film the majority class).

    Returns:
        (keras History, KeepBest callback or None). With `keep_best` the model ends with
        the weights of its best epoch by `select_on`.
    """
    if select_on not in SINGLE_SELECTION:
        raise ValueError(f"select_on must be one of {SINGLE_SELECTION}. Received: select_on={select_on!r}")
    train, steps = balanced_image_dataset(data.x_train, data.y_train, batch_size=batch_size, seed=seed)
    best = KeepBest(select_on) if keep_best else None
    cbs = [SingleValidation(data.x_val, data.y_val)] + ([best] if best else []) + list(callbacks)
    start = time.perf_counter()
    hist = model.fit(train, steps_per_epoch=steps, epochs=epochs, callbacks=cbs, verbose=verbose, shuffle=False)
    log.info("single net: %d epochs in %.1f s", epochs, time.perf_counter() - start)
    return hist, best


def fit_siamese(model, data, *, batch_size, epochs, n_pairs, n_trials, seed, callbacks=(), keep_best=True,
                verbose=0, select_on="val_three_way_accuracy"):
    """Trains the siamese net on balanced pairs; validates by three-way trials and by the
    template rule on the whole validation split.

    The validation pairs (for `val_loss`, scored by `TemplateValidation` from the
    epoch's validation embeddings) are drawn once from the validation set, half same and
    half different, twice as many as `n_trials`.

    Args:
        select_on: str, default "val_three_way_accuracy" (the paper's). The epoch kept
            with `keep_best`: "val_three_way_accuracy", "val_template_accuracy" or
            "val_balanced_accuracy" (the template rule's mean recall over the classes).

    Returns:
        (keras History, KeepBest callback or None); best = highest `select_on`.
    """
    if select_on not in SIAMESE_SELECTION:
        raise ValueError(f"select_on must be one of {SIAMESE_SELECTION}. Received: select_on={select_on!r}")
    rng = numpy_rng(seed)
    train, steps = balanced_pair_dataset(data.x_train, data.y_train, n_pairs=n_pairs, batch_size=batch_size,
                                         seed=int(rng.integers(2**31)))
    a, b, same = make_pairs(data.y_val, max(2 * n_trials, 2), rng)
    three_way = ThreeWayValidation(data.x_val, data.y_val, n_trials=n_trials, seed=int(rng.integers(2**31)),
                                   x_train=data.x_train, y_train=data.y_train)
    rule = TemplateValidation(data.x_train, data.y_train, data.x_val, data.y_val, pairs=(a, b, same))
    best = KeepBest(select_on) if keep_best else None
    cbs = [three_way, rule] + ([best] if best else []) + list(callbacks)
    start = time.perf_counter()
    hist = model.fit(train, steps_per_epoch=steps, epochs=epochs, callbacks=cbs, verbose=verbose, shuffle=False)
    log.info("siamese net: %d epochs in %.1f s", epochs, time.perf_counter() - start)
    return hist, best


def embed(siamese, x, batch_size=64):
    """Twin embeddings [N, D] of images x."""
    return siamese.get_layer("twin").predict(x, batch_size=batch_size, verbose=0)


def predict_siamese(siamese, x, templates, batch_size=64):
    """Class predictions by the most similar template, and the similarities [N, C]."""
    sims = template_similarities(siamese, embed(siamese, x, batch_size), templates)
    return np.argmax(sims, axis=1), sims


def _is_relu(layer) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", None) == "relu"


def dead_units(model, x, *, batch_size=64) -> dict:
    """Units of every ReLU convolution and dense layer that are zero on every image of `x`.

    Covers the stem, the five convolutions inside every PEPX module
    ("pepx1_1/projection", ...) and the dense layers of the single net's head (dropout
    is off at inference); the siamese net's twin is searched. Linear skip convolutions
    and the sigmoid embedding have no dead state and are left out.

    Args:
        model: the single net or the siamese net.
        x: images [N, S, S, 1].
        batch_size: int, default 64.

    Returns:
        dict layer name -> (dead, total) units (channels of a convolution), in network order.
    """
    from covidnet_siamese.models import PEPX

    base = model.get_layer("twin") if any(layer.name == "twin" for layer in model.layers) else model
    plain = [layer for layer in base.layers if _is_relu(layer)]
    pepx = [layer for layer in base.layers if isinstance(layer, PEPX)]
    # A single input tensor, not the one-element list `base.inputs`: calling a model
    # built on a list with a bare array makes Keras warn about the input structure.
    probe = keras.Model(base.inputs[0], [layer.output for layer in plain] + [layer.input for layer in pepx])
    peaks = {}

    def track(name, act):
        act = keras.ops.convert_to_numpy(act)
        top = act.reshape(-1, act.shape[-1]).max(axis=0)
        peaks[name] = top if name not in peaks else np.maximum(peaks[name], top)

    for i in range(0, len(x), batch_size):
        outs = probe(x[i:i + batch_size], training=False)
        for layer, act in zip(plain, outs[:len(plain)]):
            track(layer.name, act)
        for layer, h in zip(pepx, outs[len(plain):]):
            for sub in (layer.projection, layer.expansion, layer.depthwise, layer.projection2, layer.extension):
                h = sub(h)
                track(f"{layer.name}/{sub.name}", h)
    order = [layer.name for layer in base.layers]
    steps = ("", "projection", "expansion", "depthwise", "projection2", "extension")
    names = sorted(peaks, key=lambda n: (order.index(n.split("/")[0]), steps.index((n.split("/") + [""])[1])))
    return {name: (int(np.sum(peaks[name] <= 0.0)), int(peaks[name].shape[0])) for name in names}


def dead_unit_totals(dead) -> dict:
    """Sums of `dead_units` over the dense and the convolution layers:
    {"dense": (dead, total), "conv": (dead, total)}."""
    out = {"dense": [0, 0], "conv": [0, 0]}
    for name, (d, t) in dead.items():
        kind = "dense" if name.startswith("fc") else "conv"
        out[kind][0] += int(d)
        out[kind][1] += int(t)
    return {k: tuple(v) for k, v in out.items()}
