"""Land/water maps for TerritoryControl: procedural presets and map files.

A map is a square ``bool`` array, True = land. Presets are value noise (a few octaves of a
random coarse grid, bilinearly upsampled) thresholded at the quantile that gives the preset's
land fraction, so every size from 64 to 2048 has the same character.
"""

from __future__ import annotations

import functools
import os

import numpy as np

#: preset -> (coarse grid cells of the first octave, octaves, land fraction)
MAP_PRESETS: dict[str, tuple[int, int, float]] = {
    "plains": (6, 3, 0.92),  # one landmass with a few lakes
    "continents": (3, 4, 0.55),  # two to four large landmasses
    "islands": (12, 3, 0.38),  # many islands of varied size
}
MAP_FILE_SUFFIXES = (".png", ".npy")


def _value_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0.0, cells, size, endpoint=False)
    i0 = coords.astype(np.int64)
    frac = coords - i0
    # Bilinear interpolation, separable: rows first, then columns.
    rows = grid[i0] * (1 - frac)[:, None] + grid[i0 + 1] * frac[:, None]
    return rows[:, i0] * (1 - frac)[None, :] + rows[:, i0 + 1] * frac[None, :]


@functools.lru_cache(maxsize=4)
def seeded_map(name: str, size: int, seed: int) -> np.ndarray:
    """:func:`generate_map` for a fixed seed, cached (read-only) so resets with a fixed map are cheap."""
    land = generate_map(name, size, np.random.default_rng(seed))
    land.flags.writeable = False
    return land


def generate_map(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural ``(size, size)`` land mask for the preset ``name`` (see :data:`MAP_PRESETS`)."""
    if name not in MAP_PRESETS:
        raise ValueError(f"map_name={name!r} is unknown: expected one of {sorted(MAP_PRESETS)} or a .png/.npy file")
    cells, octaves, land_fraction = MAP_PRESETS[name]
    height = np.zeros((size, size))
    for octave in range(octaves):
        height += _value_noise(size, cells * 2**octave, rng) / 2**octave
    return height >= np.quantile(height, 1.0 - land_fraction)


#: The largest map image read (pixels): 4096 x 4096, far beyond any map_size the game plays on.
MAX_MAP_PIXELS = 4096 * 4096


def is_map_file(name: str) -> bool:
    return isinstance(name, (str, os.PathLike)) and str(name).lower().endswith(MAP_FILE_SUFFIXES)


def load_map(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Load a land mask from a PNG (grey level >= 128 is land) or a ``.npy`` (non-zero is land).

    :param size: resample (nearest neighbour) to ``size x size``; None keeps the file's size,
        which must then be square.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"map file {path!r} does not exist")
    if path.lower().endswith(".npy"):
        from sb3_masked_attention.io import check_array_sizes

        check_array_sizes(path, "map file")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):  # numpy suggests allow_pickle=True: a map never needs it
            raise ValueError(
                f"map file {path!r} is not a plain numpy array of numbers: it holds Python objects or is damaged "
                "(nothing in it ran); expected a 2-D land mask saved with np.save"
            ) from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise ValueError(
                f"map file {path!r} holds {getattr(array, 'dtype', type(array))} values: expected a numeric 2-D land mask"
            )
        if array.ndim != 2:
            raise ValueError(f"map file {path!r} holds an array of shape {array.shape}: expected a 2-D land mask")
        land = array != 0
    else:
        from PIL import (
            Image,  # pillow comes with matplotlib; imported only for PNG maps
        )

        try:
            with Image.open(path) as image:  # reads the header only: the size is checked before any pixel is decoded
                if image.width * image.height > MAX_MAP_PIXELS:
                    raise ValueError(
                        f"map file {path!r} is {image.width}x{image.height} pixels: at most {MAX_MAP_PIXELS} are read "
                        "(a map is resampled to map_size anyway)"
                    )
                land = np.asarray(image.convert("L")) >= 128
        except Image.DecompressionBombError:  # PIL's own limit, met before ours on opening
            raise ValueError(f"map file {path!r} has more pixels than PIL opens: at most {MAX_MAP_PIXELS} are read") from None
        except OSError:  # PIL's UnidentifiedImageError is an OSError
            raise ValueError(f"map file {path!r} is not a readable image: expected a PNG land mask") from None
    if size is None:
        if land.shape[0] != land.shape[1]:
            raise ValueError(f"map file {path!r} is {land.shape[1]}x{land.shape[0]}: give map_size to resample it")
        return land
    rows = np.arange(size) * land.shape[0] // size
    cols = np.arange(size) * land.shape[1] // size
    return land[rows][:, cols]
