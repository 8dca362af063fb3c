"""The 12 action units scored by the ABAW AU-detection challenge, in submission order."""

from __future__ import annotations

# (name, FACS name) in the order of the ABAW annotation header and predictions.txt.
AU_TABLE: tuple[tuple[str, str], ...] = (
    ("AU1", "Inner brow raiser"),
    ("AU2", "Outer brow raiser"),
    ("AU4", "Brow lowerer"),
    ("AU6", "Cheek raiser"),
    ("AU7", "Lid tightener"),
    ("AU10", "Upper lip raiser"),
    ("AU12", "Lip corner puller"),
    ("AU15", "Lip corner depressor"),
    ("AU23", "Lip tightener"),
    ("AU24", "Lip pressor"),
    ("AU25", "Lips part"),
    ("AU26", "Jaw drop"),
)

AUS: tuple[str, ...] = tuple(name for name, _ in AU_TABLE)
AU_NAMES: dict[str, str] = dict(AU_TABLE)
N_AUS: int = len(AUS)
AU_INDEX: dict[str, int] = {name: i for i, name in enumerate(AUS)}
ABAW_HEADER: str = ",".join(AUS)
