"""Does the model's evidence sit in the heart, or only its map?

H1 measures where the HiResCAM map of a model lies. A loss that rewards map mass
inside a mask can move the map without moving what the classifier decides on:
explanations can be manipulated while the predictions stay the same (Dombrowski et
al. 2019, "Explanations can be manipulated and geometry is to blame"; Heo et al.
2019, "Fooling neural network interpretations via adversarial model manipulation").
This module asks the trained model itself, once per model on the test set, batched:

* **occlusion of the heart and of its complement** (`occlusion_drops`, through
  `shared.explain.region_occlusion`): the drop in the true-class probability when the
  heart, or everything outside it, is replaced by a Gaussian blur of the image. A
  model whose decision rests on the heart loses much when the heart is replaced and
  little when the rest is; these are the endpoints of H4 and H5
  (`heatmap_loss.config.study_protocol`). In experiment 2 the same drop for the sex
  marker (male images) says how much the model uses the shortcut.
* **deletion and insertion areas** of the HiResCAM maps (`curve_areas`,
  `shared.explain.deletion_curve` / `insertion_curve`, the same blur): whether the
  pixels the map ranks first are the ones the score needs.
* **cascading model-parameter randomisation** (`randomisation_check`, Adebayo et al.
  2018) on a few images: the Spearman correlation of the trained model's maps with
  the maps after the top layers are re-initialised, one value per layer.

The baseline is a blur, not a constant or the training-set mean image. The phantom is
piecewise constant with sharp edges: a constant fill of the heart leaves a flat hole
with a sharp outline, a shape no training image has, so the score would react to the
hole's outline as well as to the missing heart. The training-set mean image would
paint an average heart, and in experiment 2 a marker at the share of male images'
strength, into every image, female ones included: it would add the shortcut it is
meant to remove. A blur keeps each image's intensities in range and the region's mean
level, and removes the edges and wall thicknesses that tell the classes apart. Its
known costs: a blurred heart keeps the coarse extent of a dilated one, and near the
heart's outline a blurred complement carries a faint halo of the heart; both act on
the two groups alike, and the claims compare the groups.

Scores are softmax probabilities of the true class (the classifier outputs logits;
`true_class_probability`), so a model that ignores the image has drop 0 everywhere.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.explain import (
    attribution_maps,
    cascading_randomisation,
    deletion_curve,
    feature_model,
    insertion_curve,
    region_occlusion,
)

BASELINE = "blur"


def true_class_probability(labels):
    """A target for `shared.explain` metrics: the softmax probability of each label.

    Args:
        labels: int [N]. The true class of each image.

    Returns:
        callable `logits [N, classes] -> [N]`.
    """
    idx = tf.constant(np.asarray(labels, dtype=np.int32))

    def score(logits):
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        return tf.gather(probabilities, idx, batch_dims=1)

    return score


def _chunks(n, batch_size):
    return [slice(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]


def occlusion_drops(classifier, images, labels, masks, *, blur_sigma, batch_size=128):
    """Drop in the true-class probability when a region, and when its complement, is blurred.

    Args:
        classifier: keras.Model, images -> logits [N, classes].
        images: float32 [N, H, W, 1].
        labels: int [N].
        masks: binary [N, H, W], 1 inside the region; every mask marks a pixel.
        blur_sigma: float > 0. Gaussian sigma of the baseline, in pixels of the grid.
        batch_size: int, default 128.

    Returns:
        (region_drop float64 [N], complement_drop float64 [N]): the probability as
        given minus the probability with the region (or everything else) replaced.
    """
    region, complement = [], []
    for part in _chunks(len(images), batch_size):
        result = region_occlusion(classifier, images[part],
                                  np.asarray(masks[part], np.float32),
                                  true_class_probability(labels[part]),
                                  baseline=BASELINE, blur_sigma=blur_sigma)
        region.append(result.region_drop.numpy())
        complement.append(result.complement_drop.numpy())
    return (np.concatenate(region).astype(np.float64),
            np.concatenate(complement).astype(np.float64))


def curve_areas(classifier, images, labels, *, cam_layer, method, blur_sigma, steps,
                batch_size=128):
    """Normalised deletion and insertion areas of the true class's maps, per image.

    The maps are those of H1 (ReLU'd, on the true class's logit at `cam_layer`); the
    curves score the true-class probability while the most attributed pixels are
    blurred (deletion: small is good) or put back into the blurred image (insertion:
    large is good).

    Returns:
        (deletion float64 [N], insertion float64 [N], curves): curves is a dict with
        "fractions" (the removed / inserted share at each point) and "deletion",
        "insertion" (the curves' mean over the images, one value per point).
    """
    fm = feature_model(classifier, cam_layer)
    deletion, insertion = [], []
    sums = {"deletion": 0.0, "insertion": 0.0}
    fractions = None
    for part in _chunks(len(images), batch_size):
        x = tf.constant(images[part])
        maps = attribution_maps(fm, x, targets=tf.constant(labels[part], tf.int32),
                                method=method)
        target = true_class_probability(labels[part])
        kwargs = {"steps": steps, "baseline": BASELINE, "blur_sigma": blur_sigma}
        for name, curve_fn, areas in (("deletion", deletion_curve, deletion),
                                      ("insertion", insertion_curve, insertion)):
            curve = curve_fn(classifier, x, maps, target, **kwargs)
            areas.append(curve.area().numpy())
            sums[name] = sums[name] + curve.scores.numpy().astype(np.float64).sum(axis=0)
            fractions = curve.fractions.numpy()
    curves = {"fractions": [float(f) for f in fractions],
              **{name: [float(v) for v in total / len(images)] for name, total in sums.items()}}
    return (np.concatenate(deletion).astype(np.float64),
            np.concatenate(insertion).astype(np.float64), curves)


def randomisation_check(classifier, images, labels, *, cam_layer, method, seed) -> dict:
    """Cascading randomisation of one model's maps on a few images (Adebayo et al. 2018).

    The signed maps (no ReLU: a re-initialised model's positive evidence may vanish,
    and a constant map has no ranking) of the true class at `cam_layer`, on the map
    layer's grid; every layer with weights is re-initialised in turn from the output
    down. The model's trained weights are put back afterwards.

    Returns:
        dict: "layers" (output side first) and "spearman_median" (median over the
        images of the rank correlation with the trained maps after that layer and
        those above it were re-initialised; None where every map was constant).
    """
    fm = feature_model(classifier, cam_layer)

    def maps(model, x, y):
        return attribution_maps(fm, x, targets=y, method=method, relu=False)

    result = cascading_randomisation(classifier, tf.constant(images),
                                     tf.constant(labels, tf.int32), maps, seed=seed)
    correlations = result.correlations.numpy()
    medians = []
    for row in correlations:
        finite = row[np.isfinite(row)]
        medians.append(float(np.median(finite)) if finite.size else None)
    return {"layers": list(result.layers), "spearman_median": medians}


def dependence_metrics(classifier, test, *, cam_layer, method, blur_sigma, steps,
                       curve_images=None, batch_size=128) -> dict:
    """One model's mean occlusion drops and curve areas on the test set.

    Args:
        classifier: keras.Model, images -> logits.
        test: dict with "images", "labels", "heart" (binary masks) and, in experiment 2,
            "marker" and "male".
        cam_layer, method: the maps of H1.
        blur_sigma: float. Sigma of the blur baseline.
        steps: int. Points of the deletion and insertion curves, less one.
        curve_images: int indices into the test set, optional. The images the
            deletion and insertion curves are drawn for (default all): each curve is
            `steps + 1` forward passes, most of this function's time.
        batch_size: int, default 128.

    Returns:
        dict of floats: "heart_drop" and "complement_drop" (H5 and H4's endpoints, over
        the images whose heart mask marks a pixel),
        "deletion_area", "insertion_area", and "marker_drop" (mean over the male images
        with a marker, experiment 2); and lists: "curve_fractions", "deletion_curve" and
        "insertion_curve" (the mean curves, `curve_areas`).
    """
    images, labels = test["images"], test["labels"]
    heart = (np.asarray(test["heart"]) > 0).astype(np.float32)
    # Every synthetic image has a heart; a real slice resized to the model grid might not.
    has_heart = heart.reshape(len(heart), -1).max(axis=1) > 0
    heart_drop = complement_drop = np.full(1, np.nan)  # no claim unit without a heart
    if has_heart.any():
        heart_drop, complement_drop = occlusion_drops(classifier, images[has_heart],
                                                      labels[has_heart], heart[has_heart],
                                                      blur_sigma=blur_sigma,
                                                      batch_size=batch_size)
    chosen = np.arange(len(images)) if curve_images is None else np.asarray(curve_images)
    deletion, insertion, curves = curve_areas(classifier, images[chosen], labels[chosen],
                                      cam_layer=cam_layer,
                                      method=method, blur_sigma=blur_sigma, steps=steps,
                                      batch_size=batch_size)
    out = {"heart_drop": float(np.mean(heart_drop)),
           "complement_drop": float(np.mean(complement_drop)),
           "deletion_area": float(np.mean(deletion)),
           "insertion_area": float(np.mean(insertion)),
           "curve_fractions": curves["fractions"], "deletion_curve": curves["deletion"],
           "insertion_curve": curves["insertion"]}
    if "marker" in test:
        marker = (np.asarray(test["marker"]) > 0).astype(np.float32)
        with_marker = np.asarray(test["male"], bool) & (marker.reshape(len(marker), -1).max(1) > 0)
        if with_marker.any():
            drop, _ = occlusion_drops(classifier, images[with_marker], labels[with_marker],
                                      marker[with_marker], blur_sigma=blur_sigma,
                                      batch_size=batch_size)
            out["marker_drop"] = float(np.mean(drop))
    return out
