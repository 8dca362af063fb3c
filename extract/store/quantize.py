"""How patch tokens are stored: fp16, or int8 with one scale per token; optionally pooled.

int8: each token (a D-vector at one grid cell of one frame) is divided by its own scale
`max|x| / 127` and rounded, so the error on any value is at most `scale / 2 = max|x| / 254` of
that token. Scales are float32 so they add no error of their own worth speaking of.
Pooling averages the patch grid in square blocks (16x16 -> 8x8 averages 2x2 cells), before
quantising, which cuts storage by the square of the factor.

Two implementations of the same encoding: numpy (`TokenStorage.encode`, the reference, used by
the writer for float input) and torch (`encode_torch`, run by the visual encoders on their
device before the copy to the host, so the host receives int8 or pooled tokens: 2 to 8 times
fewer bytes to copy and nothing left to encode). `EncodedTokens` carries the result to the
writer, which stores it as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TOKEN_KINDS = ("fp16", "int8")
INT8_MAX = 127


@dataclass(frozen=True)
class TokenStorage:
    """Storage option for patch tokens (T, h, w, D)."""

    kind: str = "fp16"  # "fp16" or "int8" (int8 adds a float32 scale per token)
    pool: int | None = None  # side of the stored grid after average pooling (None: keep h x w)
    # A grid no larger than `pool` on both sides is kept as it is (a small model's 4 x 4 grid
    # under the default 8); a larger grid must be a multiple of it.

    def __post_init__(self) -> None:
        if self.kind not in TOKEN_KINDS:
            raise ValueError(f"token storage kind {self.kind!r} is not one of {TOKEN_KINDS}")
        if self.pool is not None and int(self.pool) < 1:
            raise ValueError(f"token pool {self.pool!r} must be a positive grid side or None")

    @property
    def dtype(self) -> str:
        return "int8" if self.kind == "int8" else "float16"

    def fingerprint_fields(self) -> dict:
        """Fields to include in the group fingerprint (token dtype and pooling change the numbers)."""
        return {"token_kind": self.kind, "token_pool": self.pool}

    def to_attrs(self, grid: tuple[int, int]) -> dict:
        return {**asdict(self), "source_grid": list(grid)}

    @classmethod
    def from_attrs(cls, attrs: dict) -> TokenStorage:
        return cls(kind=attrs["kind"], pool=attrs.get("pool"))

    def pool_side(self, h: int, w: int) -> int | None:
        """The side the (h, w) grid is pooled to, or None when it is kept."""
        if self.pool is None or (h <= int(self.pool) and w <= int(self.pool)):
            return None
        p = int(self.pool)
        if h % p or w % p:
            raise ValueError(f"patch grid {h}x{w} cannot be pooled to {p}x{p} (not a divisor)")
        return p

    def stored_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(T, h, w, D) -> the shape kept in the store."""
        if len(shape) != 4:
            raise ValueError(f"patch tokens must be (T, h, w, D), got shape {tuple(shape)}")
        t, h, w, d = shape
        p = self.pool_side(h, w)
        return (t, h, w, d) if p is None else (t, p, p, d)

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, h, w, D) float -> (stored tokens, per-token scale (n, h', w') float32 or None)."""
        x = np.asarray(tokens)
        side = self.pool_side(x.shape[1], x.shape[2]) if x.ndim == 4 else None
        if side is not None:
            x = pool_grid(x, side)
        if self.kind == "fp16":
            return x.astype(np.float16), None
        return quantize_int8(x)

    @staticmethod
    def decode(stored: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
        """Stored tokens -> float32 (int8 tokens are multiplied back by their scale)."""
        if scale is None:
            return np.asarray(stored, dtype=np.float32)
        return dequantize_int8(stored, scale)


def pool_grid(tokens: np.ndarray, side: int) -> np.ndarray:
    """Average-pool the grid of (n, h, w, D) tokens to (n, side, side, D), in float32."""
    n, h, w, d = tokens.shape
    if h % side or w % side:
        raise ValueError(f"patch grid {h}x{w} cannot be pooled to {side}x{side} (not a divisor)")
    fh, fw = h // side, w // side
    x = np.asarray(tokens, dtype=np.float32).reshape(
        n, side, fh, side, fw, d
    )  # (n, s, fh, s, fw, D)
    return x.mean(axis=(2, 4))  # (n, side, side, D)


def quantize_int8(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., D) float -> (int8 (..., D), float32 scale (...)) with |x - q * s| <= s / 2."""
    x = np.asarray(tokens, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("cannot quantise non-finite token values to int8")
    scale = np.abs(x).max(axis=-1) / INT8_MAX  # (...)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / safe[..., None]), -INT8_MAX, INT8_MAX).astype(np.int8)  # (..., D)
    return q, scale.astype(np.float32)


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int8 (..., D) and scale (...) -> float32 (..., D)."""
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)[..., None]


def encode_torch(storage: TokenStorage, tokens: Any) -> tuple[Any, Any | None]:
    """torch (n, h, w, D) on any device -> (stored tokens, scale (n, h', w') float32 or None),
    on the same device; the same numbers as `TokenStorage.encode` up to float rounding (pooling
    sums in another order, so an int8 value may differ by one step where it lies on a half)."""
    import torch
    import torch.nn.functional as F

    x = tokens.float()  # (n, h, w, D)
    side = storage.pool_side(int(x.shape[1]), int(x.shape[2]))
    if side is not None:
        h, w = int(x.shape[1]), int(x.shape[2])
        x = F.avg_pool2d(x.permute(0, 3, 1, 2), (h // side, w // side))  # (n, D, s, s)
        x = x.permute(0, 2, 3, 1)  # (n, s, s, D)
    if storage.kind == "fp16":
        return x.half(), None
    if not bool(torch.isfinite(x).all()):
        raise ValueError("cannot quantise non-finite token values to int8")
    scale = x.abs().amax(dim=-1) / INT8_MAX  # (n, h', w')
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (
        torch.round(x / safe[..., None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    )  # (n, h', w', D)
    return q, scale


@dataclass
class EncodedTokens:
    """Patch tokens already encoded with `storage` (on the device): what the writer stores.

    `shape` is the shape of the tokens before encoding (n, h, w, D), so code that sizes arrays
    from an encoder's output sees the same shape whichever way the tokens come."""

    values: np.ndarray  # (n, h', w', D) int8 or float16
    scale: np.ndarray | None  # (n, h', w') float32 for int8, else None
    storage: TokenStorage
    source_grid: tuple[int, int]  # (h, w) before pooling

    @property
    def shape(self) -> tuple[int, ...]:
        n, _, _, d = self.values.shape
        return (n, *self.source_grid, d)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def from_torch(cls, storage: TokenStorage, tokens: Any) -> EncodedTokens:
        """Encode torch tokens (n, h, w, D) on their device, then copy the result to the host."""
        q, scale = encode_torch(storage, tokens)
        return cls(
            q.cpu().numpy(),
            None if scale is None else scale.cpu().numpy(),
            storage,
            (int(tokens.shape[1]), int(tokens.shape[2])),
        )

    @classmethod
    def concat(cls, parts: list[EncodedTokens]) -> EncodedTokens:
        first = parts[0]
        scale = None if first.scale is None else np.concatenate([p.scale for p in parts])
        return cls(
            np.concatenate([p.values for p in parts]), scale, first.storage, first.source_grid
        )

    def scatter(self, index: np.ndarray, n: int) -> EncodedTokens:
        """These tokens at frames `index` of `n` frames, zeros (scale 0) elsewhere."""
        values = np.zeros((n, *self.values.shape[1:]), self.values.dtype)
        values[index] = self.values
        scale = None
        if self.scale is not None:
            scale = np.zeros((n, *self.scale.shape[1:]), np.float32)
            scale[index] = self.scale
        return EncodedTokens(values, scale, self.storage, self.source_grid)
