"""Tests of sk_hierclust.datasets.make_colored_digits (known answers, invariants, errors)."""

import itertools

import numpy as np
import pytest
import scipy.sparse
from scipy.stats import chi2_contingency

from sk_hierclust.datasets import (
    BACKGROUND_PALETTE,
    FOREGROUND_PALETTE,
    load_digits,
    make_colored_digits,
)
from sk_hierclust.datasets._synthetic import BACKGROUND_PALETTE_NAMES, FOREGROUND_PALETTE_NAMES


def _wcag_contrast(a, b):
    def luminance(c):
        c = np.asarray(c, dtype=float)
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return c @ [0.2126, 0.7152, 0.0722]
    la, lb = sorted([luminance(a), luminance(b)], reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _random_digits(n, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 784).astype(np.float32), rng.randint(10, size=n)


def test_palettes():
    for palette, names in [(FOREGROUND_PALETTE, FOREGROUND_PALETTE_NAMES),
                           (BACKGROUND_PALETTE, BACKGROUND_PALETTE_NAMES)]:
        assert palette.dtype == np.float32 and palette.ndim == 2 and palette.shape[1] == 3
        assert len(names) == len(palette) == len(set(names))
        assert ((palette >= 0) & (palette <= 1)).all()
        assert not palette.flags.writeable
        # colours within a palette are clearly distinct
        for a, b in itertools.combinations(palette, 2):
            assert np.linalg.norm(a - b) >= 0.25
    assert not set(FOREGROUND_PALETTE_NAMES) & set(BACKGROUND_PALETTE_NAMES)
    for fg, bg in itertools.product(FOREGROUND_PALETTE, BACKGROUND_PALETTE):
        assert not np.allclose(fg, bg)
        assert _wcag_contrast(fg, bg) >= 3
        assert np.linalg.norm(fg - bg) >= 0.7


def test_known_pixels():
    # two hand-made 28x28 images: pixels at 1 (stroke), 0.5 (half) and 0 (background)
    X = np.zeros((2, 784), dtype=np.float64)
    X[0, 0] = 1.0
    X[0, 29] = 0.5        # row 1, column 1
    X[1, 783] = 1.0       # last pixel
    X[1, 400] = 0.25
    X_rgb, att = make_colored_digits(X, [7, 3], n_foreground=7, n_background=5, random_state=0)
    images = X_rgb.reshape(2, 3, 28, 28)
    for i in range(2):
        fg = FOREGROUND_PALETTE[att.foreground[i]].astype(np.float64)
        bg = BACKGROUND_PALETTE[att.background[i]].astype(np.float64)
        expected = X[i][None, :] * fg[:, None] + (1 - X[i][None, :]) * bg[:, None]
        np.testing.assert_allclose(X_rgb[i].reshape(3, 784), expected, rtol=0, atol=1e-6)
    # spelled out for the first image
    fg = FOREGROUND_PALETTE[att.foreground[0]]
    bg = BACKGROUND_PALETTE[att.background[0]]
    np.testing.assert_allclose(images[0, :, 0, 0], fg, atol=1e-7)
    np.testing.assert_allclose(images[0, :, 1, 1], (fg + bg) / 2, atol=1e-7)
    np.testing.assert_allclose(images[0, :, 5, 9], bg, atol=1e-7)
    np.testing.assert_array_equal(att.digit, [7, 3])


def test_known_pixels_fixed_colours():
    # one colour in each palette: red (1, .25, .25) on black (0, 0, 0)
    X = np.zeros((1, 784))
    X[0, [0, 1, 2]] = [1.0, 0.5, 0.0]
    X_rgb, att = make_colored_digits(X, [4], n_foreground=1, n_background=1, random_state=0)
    images = X_rgb.reshape(1, 3, 28, 28)
    np.testing.assert_allclose(images[0, :, 0, :3].T, [[1, 0.25, 0.25], [0.5, 0.125, 0.125], [0, 0, 0]],
                               atol=1e-7)
    assert (images[0, :, 1:, :] == 0).all()
    np.testing.assert_array_equal(att.foreground, [0])
    np.testing.assert_array_equal(att.background, [0])
    assert att.palettes.foreground_names == ("red",) and att.palettes.background_names == ("black",)


def test_shape_dtype_range():
    X, y = _random_digits(50)
    X_rgb, att = make_colored_digits(X, y, random_state=1)
    assert X_rgb.shape == (50, 3 * 28 * 28) and X_rgb.dtype == np.float32
    assert X_rgb.min() >= 0 and X_rgb.max() <= 1
    for key in ("digit", "foreground", "background"):
        assert att[key].dtype == np.int64 and att[key].shape == (50,)
    np.testing.assert_array_equal(att.digit, y)
    assert set(att.foreground) <= {0, 1, 2} and set(att.background) <= {0, 1}
    assert att.palettes.foreground.shape == (3, 3) and att.palettes.background.shape == (2, 3)
    np.testing.assert_array_equal(att.palettes.foreground, FOREGROUND_PALETTE[:3])
    # every image is a mix of its two colours: pixel - bg is a non-negative multiple of fg - bg
    images = X_rgb.reshape(50, 3, 784).astype(np.float64)
    fg = FOREGROUND_PALETTE[att.foreground].astype(np.float64)
    bg = BACKGROUND_PALETTE[att.background].astype(np.float64)
    intensity = X.astype(np.float64)[:, None, :]
    np.testing.assert_allclose(images, bg[:, :, None] + intensity * (fg - bg)[:, :, None], atol=1e-6)


def test_upsampled_digits():
    X, y = load_digits()
    X_rgb, att = make_colored_digits(X[:100], y[:100], n_foreground=1, n_background=1, random_state=0)
    assert X_rgb.shape == (100, 2352) and X_rgb.dtype == np.float32
    assert X_rgb.min() >= 0 and X_rgb.max() <= 1
    images = X_rgb.reshape(100, 3, 28, 28)
    # red on black: the red channel is the upsampled intensity, the others a quarter of it
    intensity = images[:, 0]
    np.testing.assert_allclose(images[:, 1], 0.25 * intensity, atol=1e-6)
    # corners aligned: the corner pixels of the 8x8 image are kept
    grey = X[:100].reshape(100, 8, 8)
    for (r, c), (R, C) in zip([(0, 0), (0, 7), (7, 0), (7, 7)], [(0, 0), (0, 27), (27, 0), (27, 27)]):
        np.testing.assert_allclose(intensity[:, R, C], grey[:, r, c], atol=1e-6)
    # bilinear: the mean intensity is about preserved
    np.testing.assert_allclose(intensity.mean(axis=(1, 2)), grey.mean(axis=(1, 2)), atol=0.05)
    np.testing.assert_array_equal(att.digit, y[:100])


def test_determinism_and_seed():
    X, y = _random_digits(200)
    a, att_a = make_colored_digits(X, y, random_state=3)
    b, att_b = make_colored_digits(X, y, random_state=3)
    np.testing.assert_array_equal(a, b)
    for key in ("foreground", "background"):
        np.testing.assert_array_equal(att_a[key], att_b[key])
    c, att_c = make_colored_digits(X, y, random_state=4)
    assert not np.array_equal(att_a.foreground, att_c.foreground)
    assert not np.array_equal(a, c)
    d, _ = make_colored_digits(X, y, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a, d)
    # input not modified
    X2, _ = _random_digits(200)
    np.testing.assert_array_equal(X, X2)


def test_colours_independent_of_digit():
    n = 6000
    y = np.repeat(np.arange(10), n // 10)
    X = np.zeros((n, 784), dtype=np.float32)
    _, att = make_colored_digits(X, y, n_foreground=3, n_background=2, random_state=0)
    for attr, k in [("foreground", 3), ("background", 2)]:
        table = np.zeros((10, k), dtype=int)
        np.add.at(table, (att.digit, att[attr]), 1)
        assert (table > 0).all()          # every (digit, colour) combination occurs
        assert chi2_contingency(table)[1] > 1e-3
    table = np.zeros((3, 2), dtype=int)
    np.add.at(table, (att.foreground, att.background), 1)
    assert (table > 0).all() and chi2_contingency(table)[1] > 1e-3
    # about uniform
    np.testing.assert_allclose(np.bincount(att.foreground) / n, 1 / 3, atol=0.03)
    np.testing.assert_allclose(np.bincount(att.background) / n, 1 / 2, atol=0.03)


@pytest.mark.parametrize("X, match", [
    (np.zeros(784), "2-D"),
    (np.zeros((2, 100)), r"\(n_samples, 784\)"),
    (np.zeros((0, 784)), "n_samples >= 1"),
    (np.full((2, 784), 1.5), r"in \[0, 1\]"),
    (np.full((2, 784), -0.1), r"in \[0, 1\]"),
    (np.full((2, 784), np.nan), "NaN"),
    (np.full((2, 64), np.inf), "NaN or infinite"),
    (np.full((2, 784), 255.0), "divide"),
    (scipy.sparse.csr_matrix((2, 784)), "sparse"),
    ([["a"] * 784] * 2, "numeric"),
])
def test_bad_X(X, match):
    with pytest.raises(ValueError, match=match):
        make_colored_digits(X, [0, 1])


@pytest.mark.parametrize("y, match", [
    ([0, 1, 2], "1-D array of 2 labels"),
    ([[0, 1]], "1-D array of 2 labels"),
    ([0.5, 1.0], "integer labels"),
    (["a", "b"], "integer labels"),
])
def test_bad_y(y, match):
    with pytest.raises(ValueError, match=match):
        make_colored_digits(np.zeros((2, 784)), y)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_foreground": 0}, r"n_foreground must be an int in \[1, 7\]"),
    ({"n_foreground": 8}, r"n_foreground must be an int in \[1, 7\]"),
    ({"n_foreground": 2.0}, "n_foreground"),
    ({"n_background": 0}, r"n_background must be an int in \[1, 5\]"),
    ({"n_background": 6}, r"n_background must be an int in \[1, 5\]"),
    ({"n_background": True}, "n_background"),
])
def test_bad_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_colored_digits(np.zeros((2, 784)), [0, 1], **kwargs)


def test_float_labels_accepted():
    _, att = make_colored_digits(np.zeros((2, 64)), np.array([3.0, 5.0]), random_state=0)
    assert att.digit.dtype == np.int64
    np.testing.assert_array_equal(att.digit, [3, 5])
