"""The built-in sample input: a portrait animated and degraded the way old GIFs are.

scikit-image ships the astronaut photo (a real face) inside its wheel, so the
demo needs no download: a slow pan and zoom over the face, shrunk to 160 px,
softened, noisy and squeezed into 48 dithered colours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .engine import Frame, StreamInfo

DEMO_FRAMES = 24
DEMO_SIZE = 160


def cache_home() -> Path:
    """$GIFSTREAM_HOME, else the platform's cache folder for gifstream."""
    home = os.environ.get("GIFSTREAM_HOME")
    if home:
        return Path(home)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gifstream"))


def demo_input() -> Path:
    """The demo GIF, made on first use and kept in the cache."""
    path = cache_home() / "demo" / f"astronaut-{DEMO_FRAMES}f-{DEMO_SIZE}px.gif"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_gif(path)
    return path


def write_demo_gif(path: Path, frames: int = DEMO_FRAMES, size: int = DEMO_SIZE) -> None:
    from .io.gif import GifOptions, GifSink

    sink = GifSink(path, GifOptions(colors=48, dither="floyd-steinberg"), overwrite=True)
    sink.open(StreamInfo(width=size, height=size, format="gif", loop=0, frame_count=frames))
    try:
        for frame in demo_frames(frames, size):
            sink.write(frame)
    except BaseException:
        sink.abort()
        raise
    sink.finish()


def demo_frames(frames: int = DEMO_FRAMES, size: int = DEMO_SIZE, seed: int = 0) -> Iterator[Frame]:
    """Degraded frames of a pan-and-zoom over the astronaut's face."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(seed)
    for index in range(frames):
        t = index / max(frames - 1, 1)
        box = _crop_box(t)
        view = photo.resize((size, size), Image.Resampling.LANCZOS, box=box)
        view = view.filter(ImageFilter.GaussianBlur(0.8))
        noisy = np.asarray(view, np.float32) + rng.normal(0, 6, (size, size, 3))
        pixels = np.clip(noisy, 0, 255).astype(np.uint8)
        # Uneven delays, as hand-made GIFs have: a longer pause on the first and middle frames.
        duration = 300.0 if index in (0, frames // 2) else 80.0
        yield Frame(index, pixels, duration_ms=duration)


def _crop_box(t: float) -> tuple[float, float, float, float]:
    # The face sits around (215, 120) in the 512² photo: pan across it while zooming in a little.
    side = 300 - 60 * t
    cx, cy = 190 + 50 * t, 150 - 20 * t
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
