"""Split a line of handwritten digits into single digits, left to right: connected components
of the ink, pieces of one digit merged, touching digits cut apart, each normalised the
MNIST way by `digitrec.preprocess.normalize_digit`. Given a scorer (the models' confidence),
touching digits are cut where the pieces read best instead of by geometric rules alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from digitrec.errors import NoDigitError, NotANumberError
from digitrec.io import ImageSource
from digitrec.preprocess.geometry import bounds, extent, gap, grow
from digitrec.preprocess.ink import ink_and_scale
from digitrec.preprocess.normalise import digit_crop, to_mnist

INK_LEVEL = 0.3  # components are taken on ink above this level (faint bridges do not join)
# A connected piece is taken for touching digits when it is wider than SPLIT_ASPECT x the line
# height, or wider than WIDE x the line height and RATIO x the other digits' usual width.
SPLIT_ASPECT = 1.2
WIDE = 1.0
RATIO = 1.7
COST = 1.3  # a cut between touching digits crosses at most this many stroke widths of ink
CENTRES = (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8)  # cut windows (fraction of the width), in order
# With a scorer (the models' confidence), a piece wider than SCORED_WIDE x the line height is
# tried cut along looser paths (at most SCORED_COST stroke widths of ink in SCORED_STROKES
# strokes, windows reaching SCORED_REACH x its width) into at most MAX_PIECES digits, each
# nearly full height with MIN_SHARE of its ink; cuts that part the ink alike (within SAME_CUT
# of it) count once. The cuts kept maximise the pieces' mean log-confidence less CUT_PENALTY
# per cut, so that a confident single digit stays whole (tuned on synthetic numbers).
SCORED_WIDE = 0.7
SCORED_COST = 2.0
SCORED_STROKES = 2
SCORED_REACH = (0.12, 0.2)
MAX_PIECES = 4
MAX_MARKS = 2000  # separate marks in one image: beyond this, not a number (a work budget)
MAX_DIGITS = 32  # digits in one number: beyond this, not a number
MIN_SHARE = 0.05
SAME_CUT = 0.03
CUT_PENALTY = 0.05

Scorer = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 digits -> (N,) confidences


@dataclass
class Segment:
    """One digit of a number: its box (x0, y0, x1, y1) in input pixels, and the 28x28 image."""

    box: tuple[int, int, int, int]
    image28: np.ndarray


@dataclass
class _Group:
    """Connected components that form one digit: label ids, box in ink-map pixels, ink mass."""

    ids: set[int]
    y0: int
    x0: int
    y1: int
    x1: int
    mass: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def box(self) -> tuple[slice, slice]:
        """The box as (row slice, column slice), as digitrec.preprocess.geometry takes it."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def absorb(self, other: _Group) -> None:
        """Merge another group into this one."""
        self.ids |= other.ids
        self.y0, self.x0 = min(self.y0, other.y0), min(self.x0, other.x0)
        self.y1, self.x1 = max(self.y1, other.y1), max(self.x1, other.x1)
        self.mass += other.mass


def _components(ink: np.ndarray) -> tuple[np.ndarray, list[_Group]]:
    """Label the ink (8-connected) and describe each component as a one-piece group,
    dropping specks (under 2% of the largest component's ink)."""
    labels, n = ndi.label(ink > INK_LEVEL, structure=np.ones((3, 3), bool))
    if n == 0:
        raise NoDigitError("no digit found: the image is blank")
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)
    least = 0.02 * mass[1:].max()
    groups = []
    for i, s in enumerate(ndi.find_objects(labels), start=1):
        if s is not None and mass[i] >= least:
            groups.append(_Group({i}, s[0].start, s[1].start, s[0].stop, s[1].stop, mass[i]))
    return labels, groups


def _typical_height(groups: list[_Group]) -> float:
    """Height of a full digit on this line: the median height of the pieces at least 60% as
    tall as the tallest (detached bars and tips do not count)."""
    tallest = max(g.height for g in groups)
    return float(np.median([g.height for g in groups if g.height >= 0.6 * tallest]))


def _overlap(a: _Group, b: _Group) -> float:
    """Shared horizontal extent as a fraction of the narrower group."""
    shared = min(a.x1, b.x1) - max(a.x0, b.x0)
    return max(0, shared) / max(1, min(a.width, b.width))


def _same_digit(a: _Group, b: _Group, line: float) -> bool:
    """Pieces of one digit: stacked one above the other in the same columns (a 5's bar, a
    broken 1), mostly in the same columns, or a short piece over half inside the other's
    columns. Neighbouring digits sit side by side and overlap only slightly."""
    frac = _overlap(a, b)
    shared_rows = min(a.y1, b.y1) - max(a.y0, b.y0)
    stacked = shared_rows <= 0.25 * min(a.height, b.height)
    short = min(a.height, b.height) < 0.7 * line
    return (stacked and frac >= 0.3) or frac >= 0.7 or (frac > 0.5 and short)


def _merge_pieces(groups: list[_Group], line: float) -> list[_Group]:
    """Merge pieces of the same digit until no pair qualifies, the first qualifying pair (in
    left-to-right order) first. Only pieces whose columns overlap can qualify, and the groups
    stay sorted by their left edge (a merge keeps the left one's), so each scan stops at the
    first piece that starts right of the current one's end."""
    groups = sorted(groups, key=lambda g: g.x0)
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if groups[b].x0 >= groups[a].x1:
                    break  # this one and every later one start right of `a`
                if _same_digit(groups[a], groups[b], line):
                    groups[a].absorb(groups.pop(b))
                    merged = True
                    break
            if merged:
                break
    return groups


def _attach_fragments(groups: list[_Group], line: float) -> list[_Group]:
    """Fragments (short, or with little ink next to the full digits) join the nearest digit
    when close; far away they stay a digit of their own if they hold enough ink, else go."""
    full = [g.mass for g in groups if g.height >= 0.6 * line]
    typical_mass = float(np.median(full)) if full else max(g.mass for g in groups)

    def fragment(g: _Group) -> bool:
        return g.height < 0.4 * line or g.mass < 0.2 * typical_mass

    kept = [g for g in groups if not fragment(g)]
    if not kept:
        return groups
    for g in groups:
        if not fragment(g):
            continue
        nearest = min(kept, key=lambda k: (_box_gap(g, k), -_overlap(g, k)))
        if _box_gap(g, nearest) <= 0.3 * line:
            nearest.absorb(g)
        elif g.mass >= 0.3 * typical_mass:
            kept.append(g)
    return sorted(kept, key=lambda g: g.x0)


def _box_gap(a: _Group, b: _Group) -> int:
    """Chebyshev distance between two groups' boxes (0 when they overlap)."""
    return gap(a.box, b.box)


def _group_ink(ink: np.ndarray, labels: np.ndarray, g: _Group) -> np.ndarray:
    """The group's ink inside its box: its components plus their faint fringe, without the
    ink of other components that reach into the box."""
    ys, xs = slice(g.y0, g.y1), slice(g.x0, g.x1)
    lab = labels[ys, xs]
    member = lab == next(iter(g.ids)) if len(g.ids) == 1 else np.isin(lab, list(g.ids))
    fringe = grow(member, 2)  # two 3x3 dilations
    return ink[ys, xs] * (fringe & ((lab == 0) | member))


def _extent(piece: np.ndarray) -> tuple[int, int]:
    """(height, width) of the ink (above INK_LEVEL) in a piece; (0, 0) when there is none."""
    strong = piece > INK_LEVEL
    return extent(bounds(strong)) if strong.any() else (0, 0)


def _digit_pair(a: np.ndarray, b: np.ndarray, line: float) -> bool:
    """Whether two halves of a cut look like two whole digits: both nearly full height, and
    not both narrow (the two sides of an open 0 are)."""
    (ha, wa), (hb, wb) = _extent(a), _extent(b)
    return min(ha, hb) >= 0.75 * line and max(wa, wb) >= 0.35 * line


def _stroke_width(crop: np.ndarray) -> float:
    """Typical stroke width in pixels: 2 x ink mass / perimeter."""
    mask = crop > 0.5
    inner = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]  # ndi.binary_erosion(mask):
             & mask[1:-1, :-2] & mask[1:-1, 2:])                # border pixels never inside
    perimeter = np.count_nonzero(mask) - np.count_nonzero(inner)
    return 2.0 * float(crop.sum()) / max(1, perimeter)


def _min_paths(crop: np.ndarray, windows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The least-ink top-to-bottom path in each column window [lo, hi): columns (k, h), ink (k,)."""
    # one column per row, moving at most one column per row, ties to the left, then straight
    # on; all windows solved at once, laid side by side in one row with a wall (inf ink) before,
    # between and after them, so that each row is a few whole-row numpy operations
    h, w = crop.shape
    widths = np.array([hi - lo for lo, hi in windows])
    starts = 1 + np.concatenate([[0], np.cumsum(widths[:-1] + 1)])
    size = int(starts[-1] + widths[-1] + 1)
    source = np.full(size, w)  # each cell's column in the crop; column w is the wall
    for (lo, hi), s in zip(windows, starts, strict=True):
        source[s:s + hi - lo] = np.arange(lo, hi)
    walled = np.empty((h, w + 1), np.float32)
    walled[:, :w], walled[:, w] = crop, np.inf
    ink = walled.take(source, axis=1)
    total = ink[0].astype(float)  # least ink down to each cell of the current row
    best = np.empty(size - 2)
    same = np.zeros((h, size), bool)   # a cell's path comes from the same column above...
    right = np.zeros((h, size), bool)  # ...or from the one to its right (else the left)
    for r in range(1, h):
        np.less(total[1:-1], total[:-2], out=same[r, 1:-1])
        np.minimum(total[:-2], total[1:-1], out=best)
        np.less(total[2:], best, out=right[r, 1:-1])
        np.minimum(best, total[2:], out=best)
        np.add(ink[r, 1:-1], best, out=total[1:-1])
    move = np.where(right, 1, same.view(np.int8) - 1)
    ends = np.array([s + int(total[s:s + n].argmin()) for s, n in zip(starts, widths, strict=True)])
    at = np.empty((h, len(windows)), int)
    at[-1] = ends
    for r in range(h - 1, 0, -1):
        np.add(at[r], move[r].take(at[r]), out=at[r - 1])
    return source[at.T], total[ends]


def _runs(values: np.ndarray) -> int:
    """Number of separate stretches of ink along a path (strokes it crosses), counting
    faint ink too: a gap in a stroke is no place to cut."""
    inside = values > 0.1
    return int(inside[0]) + int(np.count_nonzero(inside[1:] & ~inside[:-1]))


def _cut_paths(crop: np.ndarray, cost: float = COST, strokes: int = 1,
               reaches: tuple[float, ...] = (0.12,)) -> list[np.ndarray]:
    """Least-ink cut paths, in windows from the middle outwards, that cross little ink."""
    # at most `cost` stroke widths of ink in at most `strokes` strokes (faint ink counts: a gap
    # in a stroke is no place to cut); windows reach each of `reaches` x the width either side
    h, w = crop.shape
    windows = []
    for reach in reaches:
        half = max(2, int(reach * w))
        windows += [(max(1, int(c * w) - half), min(w - 1, int(c * w) + half)) for c in CENTRES]
    windows = [(lo, hi) for lo, hi in windows if hi > lo]
    if not windows:
        return []
    paths, crossed = _min_paths(crop, windows)
    limit = cost * _stroke_width(crop)
    return [path for path, ink in zip(paths, crossed, strict=True)
            if ink <= limit and _runs(crop[np.arange(h), path]) <= strokes]


def _split_once(crop: np.ndarray, line: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut along the first acceptable path that leaves a nearly full-height digit each side."""
    w = crop.shape[1]
    mass = float(crop.sum())
    for path in _cut_paths(crop):
        left = np.arange(w)[None, :] < path[:, None]
        a, b = crop * left, crop * ~left
        if min(a.sum(), b.sum()) < 0.1 * mass:
            continue
        if _digit_pair(a, b, line):
            return a, b
    return None


def _split(crop: np.ndarray, x0: int, line: float, width: float) -> list[tuple[int, np.ndarray]]:
    """Recursively cut touching digits apart: (x offset, ink) pairs. `line` is the digit
    height and `width` the usual width of the other digits on the line."""
    wide = crop.shape[1] > SPLIT_ASPECT * line or (
        crop.shape[1] > WIDE * line and crop.shape[1] > RATIO * width)
    if not wide:
        return [(x0, crop)]
    halves = _split_once(crop, line)
    if halves is None:
        return [(x0, crop)]
    pieces = []
    for half in halves:
        cols = np.flatnonzero(half.max(axis=0) > 0)
        sub = half[:, cols[0]:cols[-1] + 1]
        pieces += _split(sub, x0 + int(cols[0]), line, width)
    return pieces


def _trim(crop: np.ndarray, y0: int, x0: int
          ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Crop to the ink: the ink and its box (y0, x0, y1, x1) in ink-map pixels; None if none."""
    inked = crop > 0
    if not inked.any():
        return None
    ys, xs = bounds(inked)
    box = (y0 + ys.start, x0 + xs.start, y0 + ys.stop, x0 + xs.stop)
    return crop[ys, xs], box


def _between(crop: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The crop's ink between two cut paths (the left one's columns included)."""
    cols = np.arange(crop.shape[1])[None, :]
    return crop * ((cols >= left[:, None]) & (cols < right[:, None]))


def _distinct_cuts(crop: np.ndarray) -> list[np.ndarray]:
    """Loosely acceptable cut paths, left to right, each parting the ink unlike the others."""
    paths = _cut_paths(crop, SCORED_COST, SCORED_STROKES, SCORED_REACH)
    cols = np.arange(crop.shape[1])[None, :]
    limit = SAME_CUT * float(crop.sum())
    kept: list[np.ndarray] = []
    lefts = np.empty((len(paths), *crop.shape), bool)  # the ink map left of each kept path
    seen: set[bytes] = set()  # a path found again (by another window) parts the ink alike
    for path in sorted(paths, key=np.mean):
        if path.tobytes() in seen:
            continue
        seen.add(path.tobytes())
        left = cols < path[:, None]
        m = len(kept)
        if ((lefts[:m] != left) * crop).sum(axis=(1, 2)).min(initial=math.inf) > limit:
            kept.append(path)
            lefts[m] = left
    return kept


def _scored_cuts(crop: np.ndarray, line: float) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    """Pieces' ink, and ways to cut the crop into them as piece indices, 'no cut' first."""
    # at most MAX_PIECES pieces, each nearly full height (narrow is fine: a '1')
    h, w = crop.shape
    bounds = [np.zeros(h, int), *_distinct_cuts(crop), np.full(h, w)]
    last = len(bounds) - 1
    mass = float(crop.sum())
    inks: dict[tuple[int, int], np.ndarray | None] = {(0, last): crop}
    # strong ink (as _extent counts it) left of each column, row by row, for piece heights
    strong = np.zeros((h, w + 1), np.int32)
    np.cumsum(crop > INK_LEVEL, axis=1, out=strong[:, 1:])
    rows = np.arange(h)

    def digit(i: int, j: int) -> bool:
        """Whether the ink between bounds i and j can be a digit."""
        if (i, j) not in inks:
            inks[i, j] = None
            if not (bounds[i] <= bounds[j]).all():
                return False
            tall = np.flatnonzero(strong[rows, bounds[j]] > strong[rows, bounds[i]])
            if tall.size == 0 or tall[-1] + 1 - tall[0] < 0.75 * line:
                return False
            ink = _between(crop, bounds[i], bounds[j])
            if ink.sum() >= MIN_SHARE * mass:
                inks[i, j] = ink
        return inks[i, j] is not None

    def ways(i: int, pieces: int) -> Iterator[list[tuple[int, int]]]:
        """Ways to cut the ink right of bound i into at most `pieces` digits, fewest first."""
        if digit(i, last):
            yield [(i, last)]
        for j in range(i + 1, last) if pieces > 1 else ():
            if digit(i, j):
                yield from ([(i, j), *rest] for rest in ways(j, pieces - 1))

    found = list(ways(0, MAX_PIECES))
    used = list(dict.fromkeys(pair for way in found for pair in way))
    return [inks[pair] for pair in used], [tuple(used.index(p) for p in way) for way in found]


def _candidates(crop: np.ndarray, g: _Group, line: float, width: float,
                scored: bool) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, ...]]]:
    """A group's pieces as (x offset, ink), and the ways to cut it as piece indices."""
    # touching digits are one connected component: only such groups are cut
    if len(g.ids) != 1:
        return [(g.x0, crop)], [(0,)]
    if not scored:
        pieces = _split(crop, g.x0, line, width)
        return pieces, [tuple(range(len(pieces)))]
    if crop.shape[1] <= SCORED_WIDE * line:
        return [(g.x0, crop)], [(0,)]
    inks, options = _scored_cuts(crop, line)
    return [(g.x0, ink) for ink in inks], options


def _segment(piece: np.ndarray, y0: int, x0: int, scale: tuple[float, float]) -> Segment | None:
    """The piece normalised, with its box in input pixels; None for a speck."""
    trimmed = _trim(piece, y0, x0)
    if trimmed is None:
        return None
    piece, (y0, x0, y1, x1) = trimmed
    try:  # normalize_digit less its checks of the input: the piece is an ink map already
        image28 = to_mnist(digit_crop(np.ascontiguousarray(piece, np.float32))[0])
    except NoDigitError:  # a speck that survived grouping is not worth failing for
        return None
    sy, sx = scale
    box = (math.floor(x0 * sx), math.floor(y0 * sy), math.ceil(x1 * sx), math.ceil(y1 * sy))
    return Segment(box=box, image28=image28)


def region_segment(ink: np.ndarray, x0: int, x1: int, scale: tuple[float, float]
                   ) -> Segment | None:
    """The ink in columns [x0, x1) of the map as one digit (None when there is none)."""
    x0, x1 = max(0, x0), min(ink.shape[1], x1)
    if x1 <= x0:
        return None
    return _segment(np.where(ink[:, x0:x1] > INK_LEVEL / 3, ink[:, x0:x1], 0.0), 0, x0, scale)


def _value(option: list[Segment], confidence: dict[int, float]) -> float:
    """Mean log-confidence of a way to cut, less CUT_PENALTY per cut."""
    if not option:
        return -math.inf
    logs = [math.log(max(confidence[id(s)], 1e-6)) for s in option]
    return sum(logs) / len(logs) - CUT_PENALTY * (len(option) - 1)


def _choose(groups: list[list[list[Segment]]], score: Scorer) -> list[list[Segment]]:
    """For each group, the way to cut it that reads best. Every piece of every group is scored,
    all in one batch (so that a caller's scorer can keep its readings of the digits chosen),
    unless there is nothing to choose between and at most one piece; when there are surely
    more than MAX_DIGITS digits (a number refused), only the pieces to choose between."""
    every = sum(min(len(o) for o in options) for options in groups) <= MAX_DIGITS
    unique = {id(s): s for options in groups if every or len(options) > 1
              for o in options for s in o}
    if len(unique) <= 1 and all(len(options) == 1 for options in groups):
        return [options[0] for options in groups]
    values = np.asarray(score(np.stack([s.image28 for s in unique.values()])), float)
    confidence = dict(zip(unique, values.tolist(), strict=True))
    return [max(options, key=lambda o: _value(o, confidence)) if len(options) > 1
            else options[0] for options in groups]


def segment_digits(source: ImageSource, score: Scorer | None = None) -> list[Segment]:
    """Find the digits of a handwritten number, left to right, each as a 28x28 MNIST image."""
    # with `score`, touching digits are cut where the pieces read best
    ink, scale = ink_and_scale(source)
    return segment_ink(ink, scale, score)


def segment_ink(ink: np.ndarray, scale: tuple[float, float], score: Scorer | None = None
                ) -> list[Segment]:
    """`segment_digits` of an ink map (`preprocess.ink_and_scale`: the map, input pixels per
    map pixel)."""
    sy, sx = scale
    labels, groups = _components(ink)
    if len(groups) > MAX_MARKS:
        raise NotANumberError(f"the image holds {len(groups):,} separate marks: too many for a "
                              f"number (at most {MAX_MARKS:,} are looked at)")
    groups = _merge_pieces(groups, _typical_height(groups))
    line = _typical_height(groups)
    groups = _attach_fragments(groups, line)
    per_group = []
    for g in groups:
        others = [o.width for o in groups if o is not g and o.width >= 0.35 * line]
        width = float(np.median(others)) if others else math.inf
        pieces, options = _candidates(_group_ink(ink, labels, g), g, line, width,
                                      score is not None)
        segs = [_segment(piece, g.y0, x, (sy, sx)) for x, piece in pieces]
        per_group.append([[segs[i] for i in o if segs[i] is not None] for o in options])
    chosen = ([options[0] for options in per_group] if score is None
              else _choose(per_group, score))
    segments = [s for option in chosen for s in option]
    if not segments:
        raise NoDigitError("no digit found: the image is blank")
    if len(segments) > MAX_DIGITS:
        raise NotANumberError(f"the image holds {len(segments)} digit-like marks: too many for "
                              f"one number (at most {MAX_DIGITS} digits are read)")
    return sorted(segments, key=lambda s: s.box[0])
