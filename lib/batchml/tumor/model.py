"""The tumor CNN (Keras layers) and its input augmentation (TensorFlow image ops).

``seed`` is the network of the original notebook: Conv 64 3x3, 32 5x5, 16 5x5, 8 7x7/2, 4 7x7/2,
Dense 50 relu with L2, Dense 2 softmax (about 1.9 GMAC per 175 px scan).  ``compact`` strides and
pools early (16-32-64-128 channels by default, optionally batch normalization, global average
pooling, dropout; about 30x fewer operations than ``seed`` at the same size) for real scans on CPUs.
``small`` is a fast network for tests and smoke runs.

Training-time augmentation (:func:`augment`) is drawn per image inside the train step: flips, and
one fused bilinear transform for rotation, zoom and shift, then a brightness offset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ARCHITECTURES = ("seed", "compact", "small")
SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.02  # the cosine schedule ends at this fraction of the learning rate
N_CLASSES = 2
# the moving statistics of batch normalization follow ~10 steps (an epoch of the real set is ~13):
# Keras' 0.99 leaves them far from the weights' for the first epochs (poor validation scores)
BN_MOMENTUM = 0.9


def build_model(architecture: str, size: int, l2: float = 1e-3, width: int = 16, batch_norm: bool = False):
    """A Keras model: ``(size, size, 1)`` floats in [0, 1] -> class probabilities ``(2,)``.

    Parameters
    ----------
    architecture : {"seed", "compact", "small"}
    size : int
        Side of the square input.
    l2 : float
        L2 weight of the dense hidden layer.
    width : int
        ``compact``: channels of the first convolution (then x2, x4, x8).
    batch_norm : bool
        ``compact``: batch normalization after each convolution (before the ReLU).
    """
    import keras
    from keras import layers
    inp = keras.Input((size, size, 1), name="scan")
    if architecture == "seed":
        x = layers.Conv2D(64, 3, activation="relu")(inp)
        x = layers.Conv2D(32, 5, activation="relu")(x)
        x = layers.Conv2D(16, 5, activation="relu")(x)
        x = layers.Conv2D(8, 7, strides=2, activation="relu")(x)
        x = layers.Conv2D(4, 7, strides=2, activation="relu")(x)
        x = layers.Flatten()(x)
        x = layers.Dense(50, activation="relu", kernel_regularizer=keras.regularizers.L2(l2))(x)
    elif architecture == "compact":
        x = _compact_trunk(inp, width, batch_norm)
        x = layers.Dropout(0.3)(x)
        x = layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.L2(l2))(x)
    elif architecture == "small":
        x = layers.Conv2D(8, 3, activation="relu", padding="same")(inp)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
        x = layers.GlobalMaxPooling2D()(x)
        x = layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(l2))(x)
    else:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    out = layers.Dense(N_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=f"tumor_{architecture}")


def _compact_trunk(x, width: int, batch_norm: bool):
    """Conv 3x3/2, then three Conv 3x3 + max-pool 2 blocks (width x1, x2, x4, x8), global average
    pooling."""
    from keras import layers

    def conv(x, filters, strides=1):
        if not batch_norm:
            return layers.Conv2D(filters, 3, strides=strides, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        # synchronized: every worker normalizes with (and keeps) the global batch's statistics
        bn = layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=True)
        return layers.ReLU()(bn(x))

    x = conv(x, width, strides=2)
    for k in (2, 4, 8):
        x = layers.MaxPooling2D(2)(conv(x, width * k))
    return layers.GlobalAveragePooling2D()(x)


def make_optimizer(learning_rate: float, schedule: str, total_steps: int):
    """Adam at ``learning_rate``, constant or (``schedule="cosine"``) decayed along a half cosine to
    ``COSINE_FLOOR`` of it over ``total_steps`` steps (by the optimizer's step counter, which the
    checkpoints keep, so a resumed run continues the curve; one resumed with more epochs follows
    the longer curve from its step)."""
    import keras
    if schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=max(1, total_steps), alpha=COSINE_FLOOR)
    elif schedule != "constant":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    return keras.optimizers.Adam(learning_rate)


def class_weights(counts: dict[int, int]) -> np.ndarray:
    """Balanced class weights ``n / (k * n_c)`` (1 for a class with no examples)."""
    total = sum(counts.values())
    k = N_CLASSES
    return np.array([total / (k * counts[c]) if counts.get(c) else 1.0 for c in range(k)], np.float32)


@dataclass(frozen=True)
class Augmentation:
    """Random training-time changes of a batch, each drawn per image (0 turns one off).

    flips: left-right and up-down, each with probability 1/2; rotation_deg: uniform in
    ``[-r, r]`` degrees; shift: uniform in ``[-s, s]`` of the side, per axis; zoom: scale uniform in
    ``[1 - z, 1 + z]`` (about the centre); brightness: ``+ U[-b, b]`` then clipped to [0, 1].
    """

    flips: bool = True
    rotation_deg: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0


def affine_transforms(angles, scales, shifts_x, shifts_y, h, w):
    """``ImageProjectiveTransformV3`` rows (output pixel -> input pixel) that rotate by ``angles``
    (radians), scale by ``scales`` (> 1 enlarges) about the image centre and then move the content by
    ``(shifts_x, shifts_y)`` pixels; all arguments are float tensors of shape ``(n,)`` (``h, w``
    scalars)."""
    import tensorflow as tf
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a0, a1 = tf.cos(angles) / scales, -tf.sin(angles) / scales
    b0, b1 = tf.sin(angles) / scales, tf.cos(angles) / scales
    a2 = cx - a0 * (cx + shifts_x) - a1 * (cy + shifts_y)
    b2 = cy - b0 * (cx + shifts_x) - b1 * (cy + shifts_y)
    zeros = tf.zeros_like(angles)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def transform_images(images, transforms):
    """Apply ``affine_transforms`` rows to a batch ``(n, h, w, 1)`` (bilinear, black fill)."""
    import tensorflow as tf
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


def augment(images, generator, aug: Augmentation):
    """The random changes of ``aug`` applied to a batch ``(n, h, w, 1)``, drawn from the
    ``tf.random.Generator`` (one fused geometric transform per image)."""
    import tensorflow as tf
    n = tf.shape(images)[0]
    if aug.flips:
        flip_lr = generator.uniform([n, 1, 1, 1]) < 0.5
        images = tf.where(flip_lr, tf.image.flip_left_right(images), images)
        flip_ud = generator.uniform([n, 1, 1, 1]) < 0.5
        images = tf.where(flip_ud, tf.image.flip_up_down(images), images)
    if aug.rotation_deg > 0 or aug.shift > 0 or aug.zoom > 0:
        h = tf.cast(tf.shape(images)[1], tf.float32)
        w = tf.cast(tf.shape(images)[2], tf.float32)
        limit = aug.rotation_deg * math.pi / 180.0
        angles = generator.uniform([n], -limit, limit) if limit > 0 else tf.zeros([n])
        scales = generator.uniform([n], 1.0 - aug.zoom, 1.0 + aug.zoom) if aug.zoom > 0 else tf.ones([n])
        sx = sy = tf.zeros([n])
        if aug.shift > 0:
            sx = generator.uniform([n], -aug.shift, aug.shift) * w
            sy = generator.uniform([n], -aug.shift, aug.shift) * h
        images = transform_images(images, affine_transforms(angles, scales, sx, sy, h, w))
    if aug.brightness > 0:
        delta = generator.uniform([n, 1, 1, 1], -aug.brightness, aug.brightness)
        images = tf.clip_by_value(images + delta, 0.0, 1.0)
    return images
