"""The nearest valid name to a mistyped one, for error messages ("unknown model 'wrn-16-4-botleneck' (did you mean
'wrn-16-4-bottleneck'?); valid names: ...").

>>> did_you_mean("trian", ["train", "eval", "demo"])
" (did you mean 'train'?)"
>>> did_you_mean("xyz", ["train", "eval"])
''
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

__all__ = ["did_you_mean"]


def did_you_mean(name: str, choices: Iterable[str] | Mapping[str, str]) -> str:
    """``" (did you mean 'x'?)"`` naming the closest one or two ``choices`` (difflib ratio ≥ 0.6, case ignored),
    or ``""`` when none is close.  ``choices`` may map aliases to canonical names (``{"fmnist": "fashion-mnist",
    "fashion-mnist": "fashion-mnist"}``): names and aliases are matched, canonical names are suggested, once each.

    >>> did_you_mean("fashon", {"fashion-mnist": "fashion-mnist", "fashion": "fashion-mnist", "ptb": "ptb"})
    " (did you mean 'fashion-mnist'?)"
    """
    canonical = dict(choices) if isinstance(choices, Mapping) else {c: c for c in choices}
    lowered = {key.lower(): value for key, value in canonical.items()}
    close = difflib.get_close_matches(str(name).strip().lower(), list(lowered), n=4, cutoff=0.6)
    suggested = list(dict.fromkeys(lowered[c] for c in close))[:2]
    if not suggested:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in suggested)}?)"
