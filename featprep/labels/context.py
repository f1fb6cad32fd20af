"""The fields of an HTS English full-context label (Festival / label-full.awk layout).

``p1^p2-p3+p4=p5@p6_p7/A:a1_a2_a3/B:b1-b2-b3@b4-b5&b6-b7#b8-b9$b10-b11!b12-b13;b14-b15|b16
/C:c1+c2+c3/D:d1_d2/E:e1+e2@e3+e4&e5+e6#e7+e8/F:f1_f2/G:g1_g2/H:h1=h2@h3=h4|h5/I:i1=i2
/J:j1+j2-j3`` (one line). See shared reference ``hts-labels.md`` for each field's meaning.
"""

from __future__ import annotations

import re

from ..errors import FeatprepError

_V = r"([^/]*?)"
_LAYOUT = re.compile(
    rf"^{_V}\^{_V}-{_V}\+{_V}={_V}@{_V}_{_V}"
    rf"/A:{_V}_{_V}_{_V}"
    rf"/B:{_V}-{_V}-{_V}@{_V}-{_V}&{_V}-{_V}#{_V}-{_V}\${_V}-{_V}!{_V}-{_V};{_V}-{_V}\|{_V}"
    rf"/C:{_V}\+{_V}\+{_V}"
    rf"/D:{_V}_{_V}"
    rf"/E:{_V}\+{_V}@{_V}\+{_V}&{_V}\+{_V}#{_V}\+{_V}"
    rf"/F:{_V}_{_V}"
    rf"/G:{_V}_{_V}"
    rf"/H:{_V}={_V}@{_V}={_V}\|{_V}"
    rf"/I:{_V}={_V}"
    rf"/J:{_V}\+{_V}-{_V}$"
)

FIELDS = (
    [f"p{i}" for i in range(1, 8)]
    + [f"a{i}" for i in range(1, 4)]
    + [f"b{i}" for i in range(1, 17)]
    + [f"c{i}" for i in range(1, 4)]
    + ["d1", "d2"]
    + [f"e{i}" for i in range(1, 9)]
    + ["f1", "f2", "g1", "g2"]
    + [f"h{i}" for i in range(1, 6)]
    + ["i1", "i2", "j1", "j2", "j3"]
)
#: fields that hold names (phones, vowel, part of speech, tone); the others are numbers or x
CATEGORICAL = ("p1", "p2", "p3", "p4", "p5", "b16", "d1", "e1", "f1", "h5")
NUMERIC = tuple(f for f in FIELDS if f not in CATEGORICAL)


def parse_context(context: str) -> dict[str, str]:
    """Field name -> value (as written) of one full context."""
    m = _LAYOUT.match(context)
    if m is None:
        raise FeatprepError(f"not an HTS English full context: {context[:80]!r}")
    return dict(zip(FIELDS, m.groups(), strict=True))


def set_phones(context: str, phones: tuple[str, str, str, str, str]) -> str:
    """The context with its five phone fields (p1..p5) replaced."""
    rest = context.split("@", 1)[1]
    p1, p2, p3, p4, p5 = phones
    return f"{p1}^{p2}-{p3}+{p4}={p5}@{rest}"
