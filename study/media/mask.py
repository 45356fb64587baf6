"""``--mask X0,Y0,X1,Y1``: a rectangle blanked (set to black) in every frame a command reads.

Scanners burn text into the image -- the patient's name and ID, the date, the institution -- most often
in a band along the top of an echo frame. A header may say so (BurnedInAnnotation, study/media/dicom.py)
or, on most ultrasound, not at all. ``--mask`` blanks such a band in every frame as it is read, so it
reaches no exported frame, annotated copy or MP4, and the model is shown the frame as it was labelled.

The rectangle runs from its top-left corner (X0, Y0), included, to its bottom-right corner (X1, Y1),
excluded. When all four numbers lie in [0, 1] they are fractions of the frame's width and height
(``0,0,1,0.1``: the top tenth of every frame, whatever its size), rounded outwards to whole pixels;
otherwise they are pixels (``0,0,800,60``: the top 60 rows of an 800-pixel-wide frame), clipped to the
frame. ``--mask`` may be given several times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from study.errors import UsageError

MASK_HELP = ("blank the rectangle X0,Y0,X1,Y1 in every frame (burned-in text): fractions of the width and "
             "height when all four lie in [0, 1] (0,0,1,0.1: the top tenth), else pixels; repeatable")


@dataclass(frozen=True)
class Mask:
    x0: float
    y0: float
    x1: float
    y1: float
    fractions: bool

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in (self.x0, self.y0, self.x1, self.y1))

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in a ``width`` x ``height`` frame's pixels, x1 and y1 excluded, clipped to it."""
        if self.fractions:
            box = (math.floor(self.x0 * width), math.floor(self.y0 * height),
                   math.ceil(self.x1 * width), math.ceil(self.y1 * height))
        else:
            box = (round(self.x0), round(self.y0), round(self.x1), round(self.y1))
        x0, y0, x1, y1 = box
        return min(x0, width), min(y0, height), min(x1, width), min(y1, height)


def parse_mask(text: str) -> Mask:
    """``X0,Y0,X1,Y1`` as a :class:`Mask`; :class:`UsageError` (one line) when it is not one."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise UsageError(f"--mask {text}: give four numbers X0,Y0,X1,Y1 of at least 0, e.g. --mask 0,0,1,0.1 "
                         "(the top tenth of each frame) or --mask 0,0,800,60 (pixels)")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"--mask {text}: X1 must exceed X0 and Y1 exceed Y0 (the top-left corner first)")
    return Mask(x0, y0, x1, y1, fractions=all(v <= 1 for v in values))


def parse_masks(texts: Sequence[str] | None) -> tuple[Mask, ...]:
    return tuple(parse_mask(t) for t in texts or ())


def blank(image: Image.Image, masks: Sequence[Mask]) -> Image.Image:
    """``image`` with every mask's rectangle black (the same image when there is none, else a copy)."""
    if not masks:
        return image
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for mask in masks:
        x0, y0, x1, y1 = mask.pixels(out.width, out.height)
        if x1 > x0 and y1 > y0:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=0)  # PIL's rectangle includes its far corner
    return out


def blank_letterboxed(array: np.ndarray, masks: Sequence[Mask], geometry: tuple[int, ...], width: int,
                      height: int) -> np.ndarray:
    """Every mask blanked in a (3, S, S) letterboxed ``array`` of a ``width`` x ``height`` frame (in place;
    rounded outwards, so no masked pixel survives the resize)."""
    new_w, new_h, left, top = geometry
    for mask in masks:
        x0, y0, x1, y1 = mask.pixels(width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        c0, c1 = left + math.floor(x0 * new_w / width), left + math.ceil(x1 * new_w / width)
        r0, r1 = top + math.floor(y0 * new_h / height), top + math.ceil(y1 * new_h / height)
        array[:, r0:r1, c0:c1] = 0
    return array


def below(masks: Sequence[Mask], width: int, height: int, x: int, y: int) -> int:
    """The first row at or below ``y`` where the point (x, row) is outside every mask: where a label
    drawn at (x, y) stays visible (it is drawn below a masked top band instead of into it). A gap of 4 rows
    keeps the label's colour out of the band's last rows once a JPEG or an MP4 halves the colour resolution."""
    row, moved = y, True
    while moved:
        moved = False
        for mask in masks:
            x0, y0, x1, y1 = mask.pixels(width, height)
            if x0 <= x < x1 and y0 <= row < y1:
                row, moved = y1 + 4, True
    return row
