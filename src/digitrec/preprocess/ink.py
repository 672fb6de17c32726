"""Finding the ink: grey and alpha planes of any decoded image, polarity, background and
shading, noise, and a soft ramp to an ink map float32 in [0, 1] (1 = ink)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from digitrec.errors import ImageDecodeError, NoDigitError
from digitrec.io import FULL_SIZE, WORK_SIDE, ImageSource, load_image
from digitrec.io.decode import reason


def planes(image: Image.Image, factor: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey and alpha planes, float32 in [0, 1], of an image in a `grey_mode` mode,
    box-reduced by `factor` (default: as much as brings the long side within WORK_SIDE)."""
    factor = factor or math.ceil(max(image.size) / WORK_SIDE)
    if factor > 1 and image.mode == "LA":
        return _reduced_la(image, factor)
    if factor > 1 and image.mode == "L":
        image = image.reduce(factor)
    if image.mode == "L":
        return _unit(np.asarray(image)), None
    if image.mode == "LA":
        la = np.asarray(image)
        return _unit(la[..., 0]), _unit(la[..., 1])
    return _block_reduce(_wide_grey(image), factor), None


def _reduced_la(image: Image.Image, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey and alpha planes of `image.reduce(factor)` for an LA image. Pillow reduces LA with
    the grey premultiplied by alpha (LA → La → reduce → LA, three passes); when the grey band
    is all black or all white, as a canvas's strokes are, that comes to: alpha reduced alone,
    grey 0 everywhere (black), or 255 where the reduced alpha is above 0 (white)."""
    grey_band, alpha_band = image.split()
    grey = np.asarray(grey_band)
    top = int(grey.max())
    if top != 0 and int(grey.min()) != 255:  # any other grey: Pillow's three passes
        la = np.asarray(image.reduce(factor))
        return _unit(la[..., 0]), _unit(la[..., 1])
    alpha = np.asarray(alpha_band.reduce(factor))
    if top == 0:
        return np.zeros(alpha.shape, np.float32), _unit(alpha)
    return _unit(np.where(alpha > 0, np.uint8(255), np.uint8(0))), _unit(alpha)


def _unit(plane: np.ndarray) -> np.ndarray:
    """uint8 plane → float32 in [0, 1], in one pass."""
    return np.multiply(plane, np.float32(1 / 255), dtype=np.float32)


def grey_mode(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to L, LA (when there is transparency) or a high-bit-depth mode."""
    mode = image.mode
    if mode == "L" or mode.startswith("I") or mode == "F":
        return image
    try:
        if mode in ("RGBA", "LA"):
            alpha = _alpha_band(image)
            if int(np.frombuffer(alpha, np.uint8).min()) == 255:
                return image.convert("L")  # opaque: the alpha channel carries nothing
            if mode == "LA":
                return image
            # = image.convert("LA") (grey from RGB, alpha as is), in under half the time
            return Image.merge("LA", (image.convert("L"),
                                      Image.frombuffer("L", image.size, alpha, "raw", "L", 0, 1)))
        if mode in ("PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
            return image.convert("RGBA").convert("LA")
        if mode == "LAB":
            return image.getchannel("L")
        if mode == "HSV":
            return image.convert("RGB").convert("L")
        return image.convert("L")
    except Exception as exc:
        raise ImageDecodeError(f"unsupported image mode {mode}: {reason(exc)}") from None


def _alpha_band(image: Image.Image) -> bytes:
    """The alpha band of an RGBA or LA image, as bytes (unpacking the band alone is fastest)."""
    return image.tobytes("raw", "A") if image.mode == "RGBA" else image.getchannel("A").tobytes()


def _wide_grey(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float images as float32 in [0, 1]."""
    a = np.asarray(image).astype(np.float32)
    if not np.isfinite(a).all():
        raise ImageDecodeError("the image contains NaN or infinite pixel values")
    low, high = float(a.min()), float(a.max())
    if image.mode == "F" and low >= 0 and high <= 1:
        return a
    if low >= 0 and high <= 255 and image.mode != "F":
        return a / 255.0
    if low >= 0 and high <= 65535 and image.mode != "F":
        return a / 65535.0
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def _block_reduce(a: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks (a partial block at the edge is dropped); a side
    shorter than `factor` (a thin strip) is averaged whole, never reduced to nothing."""
    if factor <= 1:
        return a
    fy, fx = min(factor, a.shape[0]), min(factor, a.shape[1])
    h, w = a.shape[0] // fy * fy, a.shape[1] // fx * fx
    return a[:h, :w].reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))


def _sample(a: np.ndarray, n: int = 16384) -> np.ndarray:
    """A strided subsample of about n pixels, for fast robust statistics."""
    step = max(1, math.isqrt(a.size // n))
    return a[::step, ::step]


def _quantile(values: np.ndarray, q: float, scratch: bool = False) -> float:
    """np.quantile(values, q) with linear interpolation (numpy's default), by partial sort:
    the same number, several times cheaper on the small arrays of this module. `scratch`:
    `values` is a temporary that may be reordered in place (one copy fewer)."""
    flat = np.ravel(values)
    below, above, fraction = _ranks(flat.size, q)
    if scratch:
        flat.partition((below, above))
        part = flat
    else:
        part = np.partition(flat, (below, above))
    low, high = float(part[below]), float(part[above])
    return low + (high - low) * fraction


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """The two order statistics (0-based) that the q-quantile of n values interpolates
    between, and the weight of the upper one."""
    position = (n - 1) * q
    below = math.floor(position)
    return below, min(below + 1, n - 1), position - below


def _ring(a: np.ndarray) -> np.ndarray:
    """The pixels of a thin band along the border (where the background usually is)."""
    h, w = a.shape
    band = max(1, min(h, w) // 40)
    if h <= 2 * band or w <= 2 * band:
        return a.ravel()
    return np.concatenate([a[:band].ravel(), a[-band:].ravel(),
                           a[band:-band, :band].ravel(), a[band:-band, -band:].ravel()])


def _noise_sigma(a: np.ndarray) -> float:
    """Pixel noise level, blind to how much ink there is: the median absolute difference of
    horizontal neighbours (flat paper and flat stroke cores alike give 0 without noise)."""
    s = _sample(a, 4096)
    if s.shape[1] < 2:
        return 0.0
    d = np.subtract(s[:, 1:], s[:, :-1])
    if d.size - np.count_nonzero(d) > _ranks(d.size, 0.5)[1]:
        return 0.0  # more than half the differences are 0 (flat paper, an empty canvas)
    return _quantile(np.abs(d, out=d), 0.5, scratch=True) / (0.6745 * math.sqrt(2))


def _ink_signal(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Ink-bright signal with the background at 0, and its noise level: picks the polarity
    (dark on light or light on dark) from which side of the border colour holds more
    contrast mass."""
    background = _quantile(_ring(grey), 0.5)
    sigma = _noise_sigma(grey)
    dark = _more_dark(_sample(grey), background, max(3.0 * sigma, 0.02))
    return (background - grey if dark else grey - background), sigma


def _more_dark(sample: np.ndarray, background: float, t: float) -> bool:
    """Whether the contrast mass darker than the background by over t exceeds the lighter:
    sum(clip(-dev - t, 0)) > sum(clip(dev - t, 0)) with dev = sample - background.
    When one side has no pixel beyond t, its sum is 0 and the extremes decide; only a sample
    with both needs the sums."""
    b, t32 = sample.dtype.type(background), sample.dtype.type(t)  # as numpy casts them
    if -(sample.min() - b) <= t32:
        return False  # nothing darker: 0 > anything ≥ 0 is false
    if sample.max() - b <= t32:
        return True  # something darker, nothing lighter
    dev = sample - background
    dark = float(np.clip(-dev - t, 0, None).sum())
    light = float(np.clip(dev - t, 0, None).sum())
    return dark > light


def _shading(v: np.ndarray) -> np.ndarray | float:
    """Background of an ink-bright signal (shadows, uneven light), or 0 when it is flat.
    Block medians on a coarse grid, eroded so that blocks inside strokes take their
    neighbours' value, decide: uneven light shows along the border, where bold strokes of a
    large digit do not. The surface is then a grey opening wider than any stroke (it keeps
    shadow edges sharp)."""
    h, w = v.shape
    if min(h, w) < 48:
        return 0.0
    # Shortcut: with all of the border blocks' pixels within 0.025 of the background, their
    # medians lie within 0.05 of each other. (The erosion below also looks one block further
    # in; on 300 digits of each benchmark condition the shortcut changed no output.)
    band = min(h, w) // 8
    if max(_abs_max(v[:band]), _abs_max(v[-band:]), _abs_max(v[:, :band]),
           _abs_max(v[:, -band:])) <= 0.025:
        return 0.0
    coarse = np.asarray(Image.fromarray(v, "F").resize((64, 64), Image.BOX))
    blocks = coarse.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(8, 8, 64)
    grid = np.partition(blocks, (31, 32), axis=2)[..., 31:33].mean(axis=2)  # block medians
    grid = ndi.grey_erosion(grid, size=3)
    border = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
    if np.count_nonzero(np.abs(border - _quantile(border, 0.5)) > 0.05) < 4:
        return 0.0  # flat, or only a stroke or two reaching the edge
    size = max(9, min(h, w) // 4)
    return ndi.uniform_filter(ndi.grey_opening(v, size=(size, size)), size=5)


def _abs_max(a: np.ndarray) -> float:
    """max |a| without a temporary array."""
    return max(float(a.max()), -float(a.min()))


def _ramp(v: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Map the background-free signal to ink in [0, 1]: a soft ramp from just above the noise
    floor to the typical stroke-core contrast, so anti-aliased edges stay grey. `sigma`: the
    signal's noise level when the caller knows it."""
    sigma = _noise_sigma(v) if sigma is None else sigma
    if sigma > 0.03 and min(v.shape) >= 40:
        v = ndi.gaussian_filter(v, 1.0)  # average out sensor noise before thresholding
        sigma = _noise_sigma(v)
    candidates = v[v > max(4.0 * sigma, 0.05)]
    if candidates.size < 2:
        raise NoDigitError("no digit found: the image is blank or uniform")
    step = max(1, candidates.size // 8192)
    peak = _quantile(candidates[::step], 0.9, scratch=True)
    if peak < max(0.08, 5.0 * sigma):
        raise NoDigitError("no digit found: the image has too little contrast")
    low = max(3.5 * sigma, 0.02 * peak)
    high = max(peak, low + 0.05)
    ink = np.subtract(v, low, dtype=np.float32)
    ink *= 1.0 / (high - low)
    return np.clip(ink, 0.0, 1.0, out=ink)


def ink_from_planes(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Ink from grey (and alpha): transparency decides the ink when the visible pixels are all
    one colour (canvas strokes); otherwise the image is composited onto its paper colour."""
    if alpha is not None:
        if float(alpha.max()) < 0.02:
            raise NoDigitError("no digit found: the image is fully transparent")
        if float(alpha.min()) < 0.9:
            if grey.min() == grey.max():  # one colour (the test below says so, in 2 passes)
                return _ramp(*_ink_signal(alpha))
            opaque = grey[alpha > 0.5]
            if opaque.size == 0 or float(_sample_std(opaque)) < 0.1:
                return _ramp(*_ink_signal(alpha))  # one stroke colour: alpha is the drawing
            paper = _quantile(opaque[:: max(1, opaque.size // 16384)], 0.5)
            grey = grey * alpha + paper * (1.0 - alpha)
    v, sigma = _ink_signal(grey)
    shading = _shading(v)
    if isinstance(shading, float):  # flat background: v and its noise level stand
        return _ramp(v, sigma)
    return _ramp(v - shading)


def _sample_std(values: np.ndarray) -> float:
    """Standard deviation of a flat array, on a subsample when large."""
    return float(values[:: max(1, values.size // 16384)].std())


def ink_and_scale(source: ImageSource) -> tuple[np.ndarray, tuple[float, float]]:
    """Ink map plus (sy, sx): input pixels per ink-map pixel (for boxes in input coordinates)."""
    image = load_image(source, max_side=WORK_SIDE)
    width, height = image.info.get(FULL_SIZE, image.size)
    grey, alpha = planes(grey_mode(image))
    return ink_from_planes(grey, alpha), (height / grey.shape[0], width / grey.shape[1])


def to_ink(source: ImageSource) -> np.ndarray:
    """Ink map float32 (H, W) in [0, 1] (1 = ink) of any input, at most WORK_SIDE on a side."""
    return ink_and_scale(source)[0]
