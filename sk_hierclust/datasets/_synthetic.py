"""Synthetic data sets with several independent factors of variation.

:func:`make_colored_digits` paints grey-level digits with a stroke colour and a
background colour drawn independently of the digit: a small, SVHN-like
benchmark in which a hierarchical model (e.g. the VLAC of Willetts et al.)
can cluster different attributes in different layers.
"""

from numbers import Integral

import numpy as np
import scipy.ndimage
import scipy.sparse
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "BACKGROUND_PALETTE",
    "BACKGROUND_PALETTE_NAMES",
    "FOREGROUND_PALETTE",
    "FOREGROUND_PALETTE_NAMES",
    "make_colored_digits",
]

#: Names of the stroke colours of :data:`FOREGROUND_PALETTE`, in order.
FOREGROUND_PALETTE_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")

#: Stroke (foreground) colours of :func:`make_colored_digits`: light, saturated RGB colours in
#: [0, 1], one row per colour (names in :data:`FOREGROUND_PALETTE_NAMES`); the first
#: ``n_foreground`` are used. None of them is a background colour, and each has a WCAG 2.1
#: contrast ratio of at least 3 (the minimum for graphics) and an RGB distance of at least 0.7
#: to every colour of :data:`BACKGROUND_PALETTE`.
FOREGROUND_PALETTE = np.array([
    [1.00, 0.25, 0.25],  # red
    [0.25, 1.00, 0.25],  # green
    [0.35, 0.60, 1.00],  # blue
    [1.00, 1.00, 0.20],  # yellow
    [1.00, 0.40, 1.00],  # magenta
    [0.20, 1.00, 1.00],  # cyan
    [1.00, 1.00, 1.00],  # white
], dtype=np.float32)
FOREGROUND_PALETTE.setflags(write=False)

#: Names of the background colours of :data:`BACKGROUND_PALETTE`, in order.
BACKGROUND_PALETTE_NAMES = ("black", "dark green", "maroon", "navy", "dark grey")

#: Background colours of :func:`make_colored_digits`: dark RGB colours in [0, 1], one row per
#: colour (names in :data:`BACKGROUND_PALETTE_NAMES`); the first ``n_background`` are used.
BACKGROUND_PALETTE = np.array([
    [0.00, 0.00, 0.00],  # black
    [0.00, 0.28, 0.00],  # dark green
    [0.38, 0.00, 0.00],  # maroon
    [0.00, 0.00, 0.45],  # navy
    [0.22, 0.22, 0.22],  # dark grey
], dtype=np.float32)
BACKGROUND_PALETTE.setflags(write=False)

_SIDE = 28


def _check_count(name, value, palette, palette_name):
    if isinstance(value, bool) or not isinstance(value, Integral) or not 1 <= value <= len(palette):
        raise ValueError(f"{name} must be an int in [1, {len(palette)}] (the size of {palette_name}), "
                         f"got {value!r}.")
    return int(value)


def make_colored_digits(X, y, *, n_foreground=3, n_background=2, random_state=None):
    """Paint grey-level digits with a random stroke colour and a random background colour.

    Each grey-level 28x28 image (intensity ``I`` in [0, 1] per pixel, 1 = stroke) becomes an
    RGB image whose pixel is ``I * fg + (1 - I) * bg``, with the stroke colour ``fg`` drawn
    uniformly from the first ``n_foreground`` colours of :data:`FOREGROUND_PALETTE` and the
    background colour ``bg`` uniformly from the first ``n_background`` colours of
    :data:`BACKGROUND_PALETTE`, independently of each other and of the digit. The result is a
    synthetic, SVHN-like benchmark of several factors (digit, stroke colour, background
    colour), on which a model with several latent layers, e.g. the VLAC of Willetts et al.
    [1]_, can cluster different attributes in different layers (colour in one, digit in
    another).

    Parameters
    ----------
    X : array-like of shape (n_samples, 784) or (n_samples, 64)
        Grey-level images in [0, 1], flattened in row-major order: 28x28 (MNIST, see
        :func:`~sk_hierclust.datasets.load_mnist`) or 8x8 (the UCI digits, see
        :func:`~sk_hierclust.datasets.load_digits`). 8x8 images are upsampled to 28x28
        (zoom factor 3.5) by bilinear interpolation (``scipy.ndimage.zoom`` with
        ``order=1``, corners aligned) and clipped to [0, 1].
    y : array-like of shape (n_samples,)
        Digit labels (integer-valued), returned as ``attributes.digit``.
    n_foreground : int, default=3
        Number of stroke colours, from 1 to ``len(FOREGROUND_PALETTE)`` (7).
    n_background : int, default=2
        Number of background colours, from 1 to ``len(BACKGROUND_PALETTE)`` (5).
    random_state : int, RandomState instance or None, default=None
        Seeds the colour draws (the stroke colours of all samples are drawn first, then the
        background colours). An int gives the same output on every call.

    Returns
    -------
    X_rgb : ndarray of shape (n_samples, 2352), dtype float32
        RGB images in [0, 1], channel first and flattened: reshaped to
        ``(n_samples, 3, 28, 28)`` they are ``(channel, row, column)``, so a model takes
        ``input_shape=(3, 28, 28)``.
    attributes : :class:`~sklearn.utils.Bunch`
        The factors of each sample, int64 arrays of shape (n_samples,):

        - ``digit``: the labels ``y``;
        - ``foreground``: index of the stroke colour in :data:`FOREGROUND_PALETTE`;
        - ``background``: index of the background colour in :data:`BACKGROUND_PALETTE`;

        and ``palettes``, a Bunch with ``foreground`` (shape ``(n_foreground, 3)``) and
        ``background`` (shape ``(n_background, 3)``), the RGB colours used, and
        ``foreground_names`` and ``background_names``, their names.

    Raises
    ------
    ValueError
        If ``X`` is sparse, not 2-D, has neither 784 nor 64 columns, has no row, is not
        numeric, contains NaN or infinite values or values outside [0, 1]; if ``y`` is not
        1-D, not integer-valued or not of length ``n_samples``; if ``n_foreground`` or
        ``n_background`` is not an int from 1 to the size of its palette.

    See Also
    --------
    load_mnist : 28x28 grey-level digits to paint.
    load_digits : 8x8 grey-level digits to paint (upsampled).

    Notes
    -----
    The output takes ``n_samples * 2352 * 4`` bytes (564 MB for the 60000 MNIST training
    images); the colouring runs channel by channel in float32, with two temporaries of
    ``n_samples * 784`` floats.

    References
    ----------
    .. [1] Willetts, M., Roberts, S., Holmes, C. "Disentangled Clustering with Variational
       Ladder Autoencoders for Clustering" (VLAC), arXiv:1909.11501, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_hierclust.datasets import load_digits, make_colored_digits
    >>> X, y = load_digits()
    >>> X_rgb, attributes = make_colored_digits(X, y, random_state=0)
    >>> X_rgb.shape, X_rgb.dtype
    ((1797, 2352), dtype('float32'))
    >>> np.unique(attributes.foreground).tolist(), np.unique(attributes.background).tolist()
    ([0, 1, 2], [0, 1])
    """
    n_foreground = _check_count("n_foreground", n_foreground, FOREGROUND_PALETTE, "FOREGROUND_PALETTE")
    n_background = _check_count("n_background", n_background, BACKGROUND_PALETTE, "BACKGROUND_PALETTE")
    if scipy.sparse.issparse(X):
        raise ValueError("X must be a dense array of grey-level images of shape (n_samples, 784) or "
                         "(n_samples, 64), got a sparse matrix.")
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric array of shape (n_samples, 784) or (n_samples, 64): {exc}") from None
    if X.ndim != 2 or X.shape[1] not in (_SIDE * _SIDE, 64) or X.shape[0] == 0:
        raise ValueError(f"X must be a 2-D array of grey-level images of shape (n_samples, 784) (28x28) or "
                         f"(n_samples, 64) (8x8) with n_samples >= 1, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("X must hold intensities in [0, 1]; it contains NaN or infinite values.")
    low, high = float(X.min()), float(X.max())
    if low < 0 or high > 1:
        raise ValueError(f"X must hold intensities in [0, 1], got values in [{low}, {high}]; divide by the "
                         f"maximum intensity first (e.g. 255 for raw MNIST, 16 for raw UCI digits).")
    n_samples = X.shape[0]
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or y_arr.shape[0] != n_samples:
        raise ValueError(f"y must be a 1-D array of {n_samples} labels (one per row of X), got shape "
                         f"{y_arr.shape}.")
    if y_arr.dtype.kind not in "iub":
        if y_arr.dtype.kind != "f" or not np.isfinite(y_arr).all() or not (y_arr == np.round(y_arr)).all():
            raise ValueError(f"y must hold integer labels, got dtype {y_arr.dtype}.")
    digit = y_arr.astype(np.int64)

    if X.shape[1] == 64:
        images = scipy.ndimage.zoom(X.reshape(n_samples, 8, 8), (1, _SIDE / 8, _SIDE / 8), order=1,
                                    grid_mode=False)
        X = np.clip(images, 0, 1, out=images).reshape(n_samples, _SIDE * _SIDE)

    rng = check_random_state(random_state)
    foreground = rng.randint(n_foreground, size=n_samples).astype(np.int64)
    background = rng.randint(n_background, size=n_samples).astype(np.int64)
    fg = FOREGROUND_PALETTE[:n_foreground][foreground]  # (n, 3)
    bg = BACKGROUND_PALETTE[:n_background][background]
    X_rgb = np.empty((n_samples, 3, _SIDE * _SIDE), dtype=np.float32)
    complement = np.subtract(1, X, dtype=np.float32)
    for channel in range(3):
        out = X_rgb[:, channel]
        np.multiply(X, fg[:, channel, None], out=out)
        out += complement * bg[:, channel, None]
    np.clip(X_rgb, 0, 1, out=X_rgb)
    palettes = Bunch(foreground=FOREGROUND_PALETTE[:n_foreground].copy(),
                     background=BACKGROUND_PALETTE[:n_background].copy(),
                     foreground_names=FOREGROUND_PALETTE_NAMES[:n_foreground],
                     background_names=BACKGROUND_PALETTE_NAMES[:n_background])
    attributes = Bunch(digit=digit, foreground=foreground, background=background, palettes=palettes)
    return X_rgb.reshape(n_samples, 3 * _SIDE * _SIDE), attributes
