"""Data augmentation on flattened image batches, in torch alone (no torchvision).

Used by TreeVAE's contrastive extension (Manduchi et al. 2023, §2.6): every training
batch is augmented into two views of each sample. An augmentation is any callable
``(X_batch, generator) -> Tensor`` of the batch's shape and dtype, ``X_batch`` being
``(B, n_features)`` flattened samples and ``generator`` the ``torch.Generator`` that seeds it.
"""

import torch
import torch.nn.functional as F


def affine_images(x, input_shape, angle, shift, scale, padding_mode="border"):
    r"""Apply one affine map per sample to a batch of flattened images.

    Sample ``b`` is rotated by ``angle[b]`` degrees (counter-clockwise in pixel space,
    about the image centre), scaled by ``scale[b]`` and translated by ``shift[b]`` (a
    fraction of the width and height): the output at pixel position ``p`` (relative to the
    centre) is the input at :math:`T_b^{-1}(p)` with :math:`T_b(p) = s_b R(\theta_b) p + t_b`,
    interpolated bilinearly (``torch.nn.functional.affine_grid`` and ``grid_sample``, pixel
    centres as the sampling grid, ``align_corners=False``). Zero angle and shift with scale 1
    return the input (up to rounding).

    Parameters
    ----------
    x : Tensor of shape (B, C * H * W)
        Flattened images, channels first.
    input_shape : tuple (C, H, W)
    angle : Tensor of shape (B,)
        Degrees.
    shift : Tensor of shape (B, 2)
        Horizontal and vertical shifts as fractions of the width and height.
    scale : Tensor of shape (B,)
        Zoom factors (> 1 enlarges the content).
    padding_mode : {"border", "zeros", "reflection"}, default="border"
        Values outside the input (``grid_sample``'s); ``"border"`` repeats the edge pixels,
        so a uniform background stays uniform whatever its value.

    Returns
    -------
    Tensor of the shape, dtype and device of ``x``
    """
    c, h, w = input_shape
    n = x.shape[0]
    rad = torch.deg2rad(torch.as_tensor(angle, dtype=torch.float64)).reshape(n)
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(n)
    shift = 2.0 * torch.as_tensor(shift, dtype=torch.float64).reshape(n, 2)  # in normalised units [-1, 1]
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    # output -> input map in normalised coordinates: N^-1 R(-theta) N / s, N = diag(W, H) / 2
    linear = torch.stack([torch.stack([cos, sin * h / w], -1), torch.stack([-sin * w / h, cos], -1)], -2)
    theta = torch.cat([linear, -(linear @ shift.unsqueeze(-1))], -1).to(dtype=x.dtype, device=x.device)
    images = x.reshape(n, c, h, w)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.reshape(x.shape)


class RandomAffine:
    """Random rotation, translation and scaling of each sample of a flattened image batch.

    Per sample, independently and uniformly: an angle in ``[-degrees, degrees]``, a shift in
    ``[-translate, translate]`` of the width and of the height, a zoom in ``scale``; applied
    by :func:`affine_images`. TreeVAE's ``augment="affine"`` is ``RandomAffine(input_shape)``:
    ±15°, ±10 %, 0.9-1.1.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
    degrees : float, default=15.0
    translate : float, default=0.1
    scale : tuple (low, high), default=(0.9, 1.1)
    padding_mode : str, default="border"
        See :func:`affine_images`.

    Notes
    -----
    ``RandomAffine(shape)(x, generator)`` draws the ``4 B`` parameters from ``generator``
    (on its device, in float64), so equal generator states give equal outputs on every
    device; the output has the shape, dtype and device of ``x``.
    """

    def __init__(self, input_shape, degrees=15.0, translate=0.1, scale=(0.9, 1.1), padding_mode="border"):
        self.input_shape = tuple(int(s) for s in input_shape)
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.padding_mode = padding_mode

    def __call__(self, x, generator=None):
        """Augment ``x`` ``(B, C * H * W)`` with parameters drawn from ``generator`` (None: torch's global RNG)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(x.shape[0], 4, generator=generator, dtype=torch.float64, device=device).cpu()
        low, high = self.scale
        return affine_images(x, self.input_shape, angle=(2 * u[:, 0] - 1) * self.degrees,
                             shift=(2 * u[:, 1:3] - 1) * self.translate, scale=low + (high - low) * u[:, 3],
                             padding_mode=self.padding_mode)

    def __repr__(self):
        return (f"RandomAffine(input_shape={self.input_shape}, degrees={self.degrees}, "
                f"translate={self.translate}, scale={self.scale})")
