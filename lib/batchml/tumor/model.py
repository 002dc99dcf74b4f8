"""The tumor CNN (Keras layers) and its input augmentation (TensorFlow image ops).

``seed`` is the network of the original notebook: Conv 64 3x3, 32 5x5, 16 5x5, 8 7x7/2, 4 7x7/2,
Dense 50 relu with L2, Dense 2 softmax (about 1.9 GMAC per 175 px scan).  ``compact`` strides and
pools early (16-32-64-128 channels, global average pooling, dropout; about 30x fewer operations
than ``seed`` at the same size) for real scans on CPUs.  ``small`` is a fast network for tests and
smoke runs.
"""
from __future__ import annotations

import math

import numpy as np

ARCHITECTURES = ("seed", "compact", "small")
N_CLASSES = 2


def build_model(architecture: str, size: int, l2: float = 1e-3):
    """A Keras model: ``(size, size, 1)`` floats in [0, 1] -> class probabilities ``(2,)``.

    Parameters
    ----------
    architecture : {"seed", "compact", "small"}
    size : int
        Side of the square input.
    l2 : float
        L2 weight of the dense hidden layer (``seed``).
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
        x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
        for filters in (32, 64, 128):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.GlobalAveragePooling2D()(x)
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


def class_weights(counts: dict[int, int]) -> np.ndarray:
    """Balanced class weights ``n / (k * n_c)`` (1 for a class with no examples)."""
    total = sum(counts.values())
    k = N_CLASSES
    return np.array([total / (k * counts[c]) if counts.get(c) else 1.0 for c in range(k)], np.float32)


def augment(images, generator, max_rotation_deg: float):
    """Random left-right and up-down flips and rotations of up to ``max_rotation_deg`` degrees
    (bilinear, black fill) of a batch ``(n, h, w, 1)``, drawn from the ``tf.random.Generator``."""
    import tensorflow as tf
    n = tf.shape(images)[0]
    flip_lr = generator.uniform([n, 1, 1, 1]) < 0.5
    images = tf.where(flip_lr, tf.image.flip_left_right(images), images)
    flip_ud = generator.uniform([n, 1, 1, 1]) < 0.5
    images = tf.where(flip_ud, tf.image.flip_up_down(images), images)
    if max_rotation_deg <= 0:
        return images
    limit = max_rotation_deg * math.pi / 180.0
    angles = generator.uniform([n], -limit, limit)
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    zeros = tf.zeros_like(angles)
    transforms = tf.stack([cos, -sin, x_off, sin, cos, y_off, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
