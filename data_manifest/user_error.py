"""`UserError`: a mistake the user can fix, printed as one line without a traceback.

Raised anywhere in the library (a missing file, a bad option, a store that does not fit);
the command-line entry points (`data_manifest.cli_options.run_cli`) turn it into one line on
stderr and exit status 2. `did_you_mean` builds the hint for a misspelled name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix (a missing file, a bad option); printed without a traceback."""


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name(what: str, word: str, known: Iterable[str]) -> UserError:
    """`unknown <what> 'word'; did you mean 'x'? known: a, b, c` as a UserError."""
    known = sorted(str(k) for k in known)
    hint = did_you_mean(word, known) or ";"
    return UserError(f"unknown {what} {word!r}{hint} known: {', '.join(known)}")
