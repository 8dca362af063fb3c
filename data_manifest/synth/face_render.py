"""A drawn face whose parts sit where MEAN_SHAPE_68 puts them, with one local effect per AU.

The face is drawn in a square canvas whose unit square is the aligned crop of
`data_manifest.face_shape`, so landmark regions computed from the mean shape land on the
brows, lids, cheeks, nose, lips and chin that each AU changes. Effects are a few pixels
of displacement plus faint wrinkles or shading: learnable from the right region, small
next to pose, lighting and identity, which change the whole face.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from data_manifest.aus import AU_INDEX, AUS, N_AUS
from data_manifest.face_shape import MEAN_SHAPE_68

# Where each AU's effect is drawn: boxes (u0, v0, u1, v1) in the unit square of the crop.
AU_REGIONS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "AU1": ((0.26, 0.08, 0.74, 0.30),),
    "AU2": ((0.08, 0.08, 0.36, 0.32), (0.64, 0.08, 0.92, 0.32)),
    "AU4": ((0.24, 0.16, 0.76, 0.34),),
    "AU6": ((0.14, 0.31, 0.42, 0.62), (0.58, 0.31, 0.86, 0.62)),
    "AU7": ((0.20, 0.31, 0.42, 0.42), (0.58, 0.31, 0.80, 0.42)),
    "AU10": ((0.32, 0.58, 0.68, 0.80),),
    "AU12": ((0.26, 0.58, 0.44, 0.84), (0.56, 0.58, 0.74, 0.84)),
    "AU15": ((0.26, 0.68, 0.44, 0.90), (0.56, 0.68, 0.74, 0.90)),
    "AU23": ((0.30, 0.68, 0.70, 0.86),),
    "AU24": ((0.30, 0.68, 0.70, 0.90),),
    "AU25": ((0.36, 0.70, 0.64, 0.88),),
    "AU26": ((0.20, 0.70, 0.80, 1.00),),
}

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT

# Landmark displacements per AU at full intensity: {AU: [(indices, dx, dy), ...]} in unit coords.
_MOVES: dict[str, list[tuple[tuple[int, ...], float, float]]] = {
    "AU1": [((21, 22), 0.0, -0.034), ((20, 23), 0.0, -0.022), ((19, 24), 0.0, -0.006)],
    "AU2": [((17, 26), 0.0, -0.034), ((18, 25), 0.0, -0.026), ((19, 24), 0.0, -0.010)],
    "AU4": [
        ((19, 24), 0.0, 0.010),
        ((20, 21), 0.018, 0.024),
        ((22, 23), -0.018, 0.024),
    ],
    "AU6": [((40, 41, 46, 47), 0.0, -0.010)],
    "AU7": [((37, 38, 43, 44), 0.0, 0.011), ((40, 41, 46, 47), 0.0, -0.009)],
    "AU10": [
        ((50, 51, 52), 0.0, -0.022),
        ((49, 53), 0.0, -0.015),
        ((61, 62, 63), 0.0, -0.005),
        ((31, 35), 0.0, -0.008),
    ],
    "AU12": [
        ((48, 60), -0.024, -0.036),
        ((54, 64), 0.024, -0.036),
        ((49, 59), -0.010, -0.014),
        ((53, 55), 0.010, -0.014),
    ],
    "AU15": [
        ((48, 60), -0.008, 0.040),
        ((54, 64), 0.008, 0.040),
        ((59, 55), 0.0, 0.016),
    ],
    "AU23": [
        ((49, 50, 51, 52, 53), 0.0, 0.014),
        ((55, 56, 57, 58, 59), 0.0, -0.020),
        ((48, 60), 0.022, 0.0),
        ((54, 64), -0.022, 0.0),
    ],
    "AU24": [((55, 56, 57, 58, 59, 65, 66, 67), 0.0, -0.006), ((49, 50, 51, 52, 53), 0.0, 0.004)],
    "AU25": [
        ((61, 62, 63), 0.0, -0.004),
        ((65, 66, 67), 0.0, 0.026),
        ((56, 57, 58), 0.0, 0.020),
        ((55, 59), 0.0, 0.012),
    ],
    "AU26": [
        ((65, 66, 67, 56, 57, 58), 0.0, 0.020),
        ((55, 59), 0.0, 0.012),
        ((7, 8, 9), 0.0, 0.050),
        ((6, 10), 0.0, 0.040),
        ((5, 11), 0.0, 0.026),
        ((4, 12), 0.0, 0.012),
    ],
}


@dataclass
class FaceIdentity:
    """What stays fixed for one person: colours, brow weight, small shape differences."""

    skin: np.ndarray  # (3,) RGB 0-255
    hair: np.ndarray  # (3,) RGB
    lips: np.ndarray  # (3,) RGB
    brow: np.ndarray  # (3,) RGB
    iris: np.ndarray  # (3,) RGB
    brow_thickness: float  # share of the crop side
    shape_offset: np.ndarray  # (68, 2) unit-coordinate offsets from the mean shape
    texture_seed: int  # seed of the static skin blotches
    _texture: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def skin_texture(self, size: int) -> np.ndarray:
        """(size, size, 3) float32 skin colour with soft blotches and darker borders (cached)."""
        if size not in self._texture:
            import cv2

            rng = np.random.default_rng(self.texture_seed)
            blot = rng.normal(0, 1, (6, 6)).astype(np.float32)
            blot = cv2.resize(blot, (size, size), interpolation=cv2.INTER_CUBIC)  # (S, S)
            yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
            radial = ((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.55) ** 2  # (S, S)
            shade = 1.0 - 0.18 * np.clip(radial, 0, 1.5) + 0.03 * blot
            self._texture[size] = (self.skin[None, None, :] * shade[..., None]).astype(np.float32)
        return self._texture[size]


def random_identity(rng: np.random.Generator) -> FaceIdentity:
    """A random person: skin from light to dark, hair, lips, brows, small shape changes."""
    tone = rng.uniform(0.35, 1.0)
    skin = np.array([235, 190, 160]) * tone + np.array([20, 15, 10]) * (1 - tone)
    lips = skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 6, 3)
    hair = rng.choice([np.array([30, 22, 18]), np.array([90, 60, 35]), np.array([170, 140, 90])])
    brow = np.minimum(hair, skin * 0.45) + rng.normal(0, 4, 3)
    offset = rng.normal(0, 0.006, (68, 2))
    offset[17:27] += rng.normal(0, 0.008, (1, 2)) * np.array([0.3, 1.0])  # brow height
    offset[48:68] += rng.normal(0, 0.008, (1, 2)) * np.array([0.0, 1.0])  # mouth height
    return FaceIdentity(
        skin=np.clip(skin, 0, 255).astype(np.float32),
        hair=np.clip(hair + rng.normal(0, 8, 3), 0, 255).astype(np.float32),
        lips=np.clip(lips, 0, 255).astype(np.float32),
        brow=np.clip(brow, 0, 255).astype(np.float32),
        iris=np.clip(rng.choice([[60, 40, 25], [70, 90, 110], [50, 80, 50]]), 0, 255).astype(
            np.float32
        ),
        brow_thickness=float(rng.uniform(0.022, 0.034)),
        shape_offset=offset.astype(np.float32),
        texture_seed=int(rng.integers(0, 2**31)),
    )


def deform_landmarks(identity: FaceIdentity, intensity: np.ndarray) -> np.ndarray:
    """The person's shape moved by AU intensities (12,) in [0, 1] -> (68, 2) unit coordinates."""
    pts = MEAN_SHAPE_68 + identity.shape_offset  # (68, 2)
    pts = pts.copy()
    # The mean shape's inner lips are slightly apart; the neutral face here has them closed.
    inner_mid = 0.5 * (pts[[61, 62, 63], 1] + pts[[67, 66, 65], 1])
    pts[[61, 62, 63], 1] = inner_mid
    pts[[67, 66, 65], 1] = inner_mid
    for au, moves in _MOVES.items():
        k = float(intensity[AU_INDEX[au]])
        if k <= 0:
            continue
        for idx, dx, dy in moves:
            pts[list(idx)] += k * np.array([dx, dy], np.float32)
    # Lids never cross: keep a minimal eye aperture.
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        pts[lower, 1] = max(pts[lower, 1], pts[upper, 1] + 0.006)
    return pts


@dataclass
class Occluder:
    """Something in front of the face for a few frames, in unit coordinates of the crop."""

    kind: str  # "hand" (skin-coloured blob with fingers), "object" (coloured box), "blur"
    center: tuple[float, float]  # (u, v)
    size: tuple[float, float]  # half-width, half-height
    color: tuple[float, float, float]  # RGB
    angle: float = 0.0  # degrees


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (S, S) of a canvas, centred on 0: (y, x)."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size - 0.5
    return yy, xx


def _blend(img: np.ndarray, mask: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """img where mask (uint8 0-255) is 0, layer where it is 255; computed in the mask's box only."""
    import cv2

    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return img
    m = mask[y : y + h, x : x + w].astype(np.float32)[..., None] / 255.0
    img[y : y + h, x : x + w] = (
        img[y : y + h, x : x + w] * (1 - m) + layer[y : y + h, x : x + w] * m
    )
    return img


def _p(pts: np.ndarray, size: int) -> np.ndarray:
    """Unit coordinates -> fixed-point pixel coordinates for OpenCV drawing with `shift`."""
    return np.round(np.asarray(pts, np.float64) * size * _ONE).astype(np.int32)


def _lines(layer, pts_list, value, thickness_px, size):
    import cv2

    if value <= 0:
        return
    curves = [_p(np.asarray(p), size).reshape(-1, 1, 2) for p in pts_list]
    th = max(1, int(round(thickness_px)))
    cv2.polylines(layer, curves, False, float(value), th, cv2.LINE_AA, _SHIFT)


def _ellipse(layer, center, axes, value, size, angle=0.0):
    import cv2

    if value <= 0:
        return
    c = tuple(int(v) for v in _p(center, size))
    a = tuple(max(1, int(v)) for v in _p(axes, size))
    cv2.ellipse(layer, c, a, angle, 0, 360, float(value), -1, cv2.LINE_AA, _SHIFT)


def _arc(cx: float, cy: float, half_w: float, bend: float, n: int = 7) -> np.ndarray:
    """A shallow arc (n, 2) centred at (cx, cy), `bend` > 0 bulging upwards."""
    x = np.linspace(-1, 1, n)
    return np.stack([cx + half_w * x, cy - bend * (1 - x**2)], -1)


def _shading(lm: np.ndarray, inten: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Darkening and brightening layers (S, S) float32 in [0, 1]: wrinkles, folds, cheeks."""
    import cv2

    i = {au: float(inten[AU_INDEX[au]]) for au in AUS}
    dark = np.zeros((size, size), np.float32)
    light = np.zeros((size, size), np.float32)
    th = size / 112.0
    # AU1: horizontal wrinkles over the inner brows, AU2: over the outer brows.
    for k, v in enumerate((0.145, 0.18)):
        _lines(dark, [_arc(0.5, v, 0.11 - 0.02 * k, 0.012)], 0.42 * i["AU1"], 1.3 * th, size)
        for cx in (0.23, 0.77):
            arc = _arc(cx, v + 0.01, 0.085, 0.01)
            _lines(dark, [arc], 0.5 * i["AU2"], 1.5 * th, size)
    # AU4: vertical lines between the brows.
    for x in (0.475, 0.525):
        _lines(dark, [[(x, 0.22), (x + (0.5 - x) * 0.2, 0.31)]], 0.5 * i["AU4"], 1.3 * th, size)
    # Nasolabial folds, deepened by AU10 and AU12.
    fold = 0.10 + 0.35 * max(i["AU10"], i["AU12"])
    for wing, corner, sgn in ((lm[31], lm[48], -1), (lm[35], lm[54], 1)):
        mid = 0.5 * (wing + corner) + np.array([0.03 * sgn, -0.005])
        start = wing + np.array([0.025 * sgn, -0.01])
        end = corner + np.array([0.015 * sgn, 0.01])
        _lines(dark, [np.stack([start, mid, end])], fold, 1.6 * th, size)
    # AU6: raised, brighter cheeks and crow's feet at the outer eye corners.
    for c, eye, sgn in (((0.29, 0.52), lm[36], -1), ((0.71, 0.52), lm[45], 1)):
        _ellipse(light, c, (0.085, 0.05), 0.55 * i["AU6"], size)
        for ang in (-0.5, 0.0, 0.5):
            d = np.array([np.cos(ang) * sgn, np.sin(ang)]) * 0.05
            start = eye + np.array([0.012 * sgn, 0.0])
            _lines(dark, [[start, start + d]], 0.45 * i["AU6"], 1.2 * th, size)
    # AU15: small depressor shadows below the lip corners.
    for corner in (lm[48], lm[54]):
        _ellipse(dark, corner + np.array([0.0, 0.045]), (0.025, 0.02), 0.45 * i["AU15"], size)
    # AU24: bulge under the pressed lower lip.
    _ellipse(dark, (0.5, lm[57, 1] + 0.03), (0.07, 0.014), 0.35 * i["AU24"], size)
    # Chin: a soft shadow under the jaw line that follows the jaw (AU26).
    _lines(dark, [lm[4:13]], 0.35, 2.5 * th, size)
    _ellipse(dark, lm[8] + np.array([0.0, -0.05]), (0.05, 0.012), 0.15, size)
    dark = cv2.GaussianBlur(dark, (0, 0), 0.6 * th)
    light = cv2.GaussianBlur(light, (0, 0), 2.0 * th)
    return dark, light


def render_face(
    identity: FaceIdentity,
    intensity: np.ndarray,
    size: int = 128,
    lighting: tuple[float, float] = (0.0, 0.0),
    occluders: tuple[Occluder, ...] = (),
    gaze: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one face.

    intensity: (12,) AU intensities in [0, 1] (up to 2 exaggerates), ABAW order. lighting: (angle rad, strength) of a
    directional gradient. Returns image (S, S, 3) uint8 RGB, alpha (S, S) float32 (head, hair
    and neck), landmarks (68, 2) in unit coordinates.
    """
    import cv2

    intensity = np.clip(np.asarray(intensity, np.float32).reshape(N_AUS), 0, 2)  # >1 exaggerates
    lm = deform_landmarks(identity, intensity)  # (68, 2)
    s = size
    i = {au: float(intensity[AU_INDEX[au]]) for au in AUS}
    img = np.zeros((s, s, 3), np.float32)
    mask = np.zeros((s, s), np.uint8)

    # Head outline: jaw from the landmarks, forehead as the upper half of an ellipse.
    theta = np.linspace(0, np.pi, 15)
    forehead = np.stack([0.5 + 0.42 * np.cos(theta), 0.32 - 0.34 * np.sin(theta)], -1)
    face_poly = np.concatenate([lm[0:17], forehead[1:-1]])
    neck = np.array([[0.30, 0.80], [0.70, 0.80], [0.74, 1.0], [0.26, 1.0]])
    cv2.fillPoly(mask, [_p(neck, s)], 128, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(mask, [_p(face_poly, s)], 255, cv2.LINE_AA, _SHIFT)
    skin = identity.skin_texture(s)
    neck_m = (mask == 128)[..., None]
    img = np.where(neck_m, skin * 0.75, skin)
    # Hair: above a hairline that leaves the forehead free.
    hair_line = np.array(
        [(0.04, 0.36), (0.07, 0.2), (0.15, 0.08), (0.3, 0.03), (0.5, 0.02), (0.7, 0.03)]
        + [(0.85, 0.08), (0.93, 0.2), (0.96, 0.36), (1.02, 0.36), (1.02, -0.02), (-0.02, -0.02)]
        + [(-0.02, 0.36)]
    )
    hair_m = np.zeros((s, s), np.uint8)
    cv2.fillPoly(hair_m, [_p(hair_line, s)], 255, cv2.LINE_AA, _SHIFT)
    head = np.zeros((s, s), np.uint8)
    cv2.ellipse(head, (s // 2, int(0.34 * s)), (int(0.47 * s), int(0.40 * s)), 0, 180, 360, 255, -1)
    hair_m = np.minimum(hair_m, head)
    alpha = np.maximum(mask, hair_m).astype(np.float32) / 255.0

    dark, light = _shading(lm, intensity, s)
    img = img * (1 - 0.75 * dark[..., None]) + light[..., None] * 45.0
    hf = hair_m.astype(np.float32)[..., None] / 255.0
    img = img * (1 - hf) + identity.hair * hf

    th = s / 112.0
    # Nose: faint bridge, darker base and nostrils.
    nose_dark = 0.55
    col = tuple(float(v) for v in identity.skin * nose_dark)
    cv2.polylines(
        img, [_p(lm[31:36], s).reshape(-1, 1, 2)], False, col, max(1, int(th)), cv2.LINE_AA, _SHIFT
    )
    for a, b in ((31, 32), (34, 35)):
        c = 0.5 * (lm[a] + lm[b]) + np.array([0, -0.008])
        img_c = tuple(float(v) for v in identity.skin * 0.35)
        cv2.ellipse(
            img,
            tuple(int(v) for v in _p(c, s)),
            (int(0.016 * s * _ONE), int(0.008 * s * _ONE)),
            0,
            0,
            360,
            img_c,
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    bridge = tuple(float(v) for v in identity.skin * 0.85)
    cv2.polylines(
        img,
        [_p(lm[27:31], s).reshape(-1, 1, 2)],
        False,
        bridge,
        max(1, int(th)),
        cv2.LINE_AA,
        _SHIFT,
    )

    # Eyes: sclera, iris clipped to the lids, lid lines (AU6/AU7 move the lids).
    eye_m = np.zeros((s, s), np.uint8)
    eyes = (lm[36:42], lm[42:48])
    cv2.fillPoly(eye_m, [_p(e, s) for e in eyes], 255, cv2.LINE_AA, _SHIFT)
    layer = np.zeros_like(img)
    layer[:] = (232, 230, 225)
    for e in eyes:
        c = e.mean(0) + np.array(gaze) * 0.01
        cv2.circle(
            layer,
            tuple(int(v) for v in _p(c, s)),
            int(0.024 * s * _ONE),
            tuple(float(v) for v in identity.iris),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
        cv2.circle(
            layer,
            tuple(int(v) for v in _p(c, s)),
            int(0.010 * s * _ONE),
            (15, 15, 15),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    img = _blend(img, eye_m, layer)
    lid = tuple(float(v) for v in identity.skin * 0.3)
    low = tuple(float(v) for v in identity.skin * (0.7 - 0.3 * i["AU7"]))
    for e in eyes:
        cv2.polylines(
            img,
            [_p(e[[0, 1, 2, 3]], s).reshape(-1, 1, 2)],
            False,
            lid,
            max(1, int(round(1.8 * th))),
            cv2.LINE_AA,
            _SHIFT,
        )
        cv2.polylines(
            img,
            [_p(e[[3, 4, 5, 0]], s).reshape(-1, 1, 2)],
            False,
            low,
            max(1, int(round((1 + i["AU7"]) * th))),
            cv2.LINE_AA,
            _SHIFT,
        )

    # Brows.
    bt = max(1, int(round(identity.brow_thickness * s)))
    brow = tuple(float(v) for v in identity.brow)
    cv2.polylines(
        img,
        [_p(lm[17:22], s).reshape(-1, 1, 2), _p(lm[22:27], s).reshape(-1, 1, 2)],
        False,
        brow,
        bt,
        cv2.LINE_AA,
        _SHIFT,
    )

    # Lips: AU24 presses them pale; the mouth opening (AU25/AU26) is dark with a band of teeth.
    lip_col = identity.lips * (1 - 0.45 * i["AU24"]) + identity.skin * 0.9 * 0.45 * i["AU24"]
    cv2.fillPoly(img, [_p(lm[48:60], s)], tuple(float(v) for v in lip_col), cv2.LINE_AA, _SHIFT)
    inner = lm[60:68]
    gap = float(inner[6, 1] - inner[2, 1])
    if gap > 0.009:
        mouth_m = np.zeros((s, s), np.uint8)
        cv2.fillPoly(mouth_m, [_p(inner, s)], 255, cv2.LINE_AA, _SHIFT)
        inside = np.full_like(img, (45.0, 18.0, 22.0))
        teeth_bottom = int(round((inner[2, 1] + min(0.4 * gap, 0.014)) * s))
        inside[: max(teeth_bottom, 0)] = (225.0, 222.0, 210.0)
        img = _blend(img, mouth_m, inside)
    line_col = tuple(float(v) for v in lip_col * (0.5 - 0.2 * i["AU24"]))
    lt = max(1, int(round((1.2 + 1.0 * i["AU24"]) * th)))
    cv2.polylines(
        img,
        [_p(np.concatenate([lm[48:49], inner[1:4], lm[54:55]]), s).reshape(-1, 1, 2)],
        False,
        line_col,
        lt,
        cv2.LINE_AA,
        _SHIFT,
    )

    # Lighting: a directional gradient over the whole canvas.
    angle, strength = lighting
    if strength:
        yy, xx = _grid(s)
        grad = 1 + 2 * strength * (np.cos(angle) * xx + np.sin(angle) * yy)
        img = img * grad[..., None]

    for occ in occluders:
        img, alpha = _draw_occluder(img, alpha, occ, s)
    return np.clip(img, 0, 255).astype(np.uint8), alpha, lm


def _draw_occluder(img, alpha, occ: Occluder, s: int):
    import cv2

    c = tuple(int(v) for v in _p(occ.center, s))
    ax = tuple(max(1, int(v)) for v in _p(occ.size, s))
    if occ.kind == "blur":
        u0, v0 = occ.center[0] - occ.size[0], occ.center[1] - occ.size[1]
        x0, y0 = max(0, int(u0 * s)), max(0, int(v0 * s))
        x1, y1 = (
            min(s, int((occ.center[0] + occ.size[0]) * s)),
            min(s, int((occ.center[1] + occ.size[1]) * s)),
        )
        if x1 > x0 + 2 and y1 > y0 + 2:
            patch = np.ascontiguousarray(img[y0:y1, x0:x1])
            img = img.copy()
            img[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (0, 0), 0.05 * s)
        return img, alpha
    m = np.zeros((s, s), np.uint8)
    if occ.kind == "hand":
        cv2.ellipse(m, c, ax, occ.angle, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        for k in range(4):  # fingers
            fx = occ.center[0] + (k - 1.5) * occ.size[0] * 0.5
            pts = np.array([[fx, occ.center[1]], [fx + 0.01, occ.center[1] - occ.size[1] * 1.8]])
            cv2.polylines(
                m,
                [_p(pts, s).reshape(-1, 1, 2)],
                False,
                255,
                max(2, int(0.045 * s)),
                cv2.LINE_AA,
                _SHIFT,
            )
    else:
        box = cv2.boxPoints(
            (
                (occ.center[0] * s, occ.center[1] * s),
                (2 * occ.size[0] * s, 2 * occ.size[1] * s),
                occ.angle,
            )
        )
        cv2.fillPoly(m, [np.round(box * _ONE).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    mf = m.astype(np.float32)[..., None] / 255.0
    img = img * (1 - mf) + np.asarray(occ.color, np.float32) * mf
    return img, np.maximum(alpha, mf[..., 0])
