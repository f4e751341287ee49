"""Pictures for people to look at: samples tiled into one grid image, and PNG files.

Tasks draw their figures with `make_grid`, the training loop its sample grids, and `jaxgen sample` /
`generate` / `eval` write them with `save_png`. Only numpy and Pillow: every layer above may use it.
"""
import math
import os

import numpy as np
from PIL import Image


def make_grid(images: np.ndarray, columns: int | None = None, min_size: int = 32, pad: int = 1) -> np.ndarray:
    """Tiles images [N, H, W, C] in [0, 1] into one uint8 image [rows*H', cols*W', 3], each image
    scaled up by an integer factor (nearest) to at least `min_size` pixels so 8x8 digits stay visible."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"make_grid expects images [N, H, W, C], got shape {images.shape}.")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    scale = max(1, math.ceil(min_size / max(h, w)))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return (grid * 255 + 0.5).astype(np.uint8)


def save_png(image: np.ndarray, path: str) -> None:
    """Writes a uint8 HWC image atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
