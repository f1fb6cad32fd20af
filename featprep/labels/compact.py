"""The SSW 2019 system's compact linguistic encoding: categorical fields + numeric fields.

Per frame: the ten name-valued fields of the context (five phones, the syllable's vowel,
the part of speech of three words, the phrase's ToBI end tone) as vocabulary indices for
learned embeddings, and the 43 numeric fields with the phone's length in frames and the
frame's place in the phone (0..1), ``x`` (not applicable) read as 0. Vocabularies are
sorted and fixed by the recipe, so every shard uses the same indices; index 0 is
"not applicable" (``x``, or ``0`` for a missing neighbour) and 1 an unknown value.
"""

from __future__ import annotations

import numpy as np

from .context import CATEGORICAL, NUMERIC, parse_context
from .hts import HTSLabel
from .linguistic import phone_contexts

NOT_APPLICABLE = "<x>"
UNKNOWN = "<unk>"
#: which vocabulary each categorical field uses
FIELD_VOCABULARY = {
    "p1": "phone", "p2": "phone", "p3": "phone", "p4": "phone", "p5": "phone",
    "b16": "vowel", "d1": "gpos", "e1": "gpos", "f1": "gpos", "h5": "tone",
}  # fmt: skip
NUMERIC_COLUMNS = (*NUMERIC, "phone_frames", "phone_position")


def vocabularies(recipe_vocab: dict[str, list[str]]) -> dict[str, list[str]]:
    """The full vocabularies: the two reserved entries, then the recipe's values sorted."""
    return {name: [NOT_APPLICABLE, UNKNOWN, *sorted(set(values))] for name, values in recipe_vocab.items()}


def compact_features(
    contexts: list[str], phone_frames: np.ndarray, vocab: dict[str, list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-level categorical indices (int32, frames x 10) and numeric fields (float32,
    frames x 45) of phone-level ``contexts`` lasting ``phone_frames`` frames each."""
    index = {name: {v: i for i, v in enumerate(values)} for name, values in vocab.items()}
    cat = np.zeros((len(contexts), len(CATEGORICAL)), np.int32)
    num = np.zeros((len(contexts), len(NUMERIC)), np.float32)
    for row, context in enumerate(contexts):
        fields = parse_context(context)
        for col, name in enumerate(CATEGORICAL):
            value = fields[name]
            if value not in ("x", "0"):
                cat[row, col] = index[FIELD_VOCABULARY[name]].get(value, 1)
        for col, name in enumerate(NUMERIC):
            value = fields[name]
            num[row, col] = float(value) if value.isdigit() else 0.0
    phone_frames = np.asarray(phone_frames, np.int64)
    owner = np.repeat(np.arange(len(contexts)), phone_frames)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(phone_frames) - phone_frames, phone_frames)
    P = phone_frames[owner].astype(np.float32)
    numeric = np.concatenate([num[owner], P[:, None], ((k + 0.5) / P)[:, None].astype(np.float32)], axis=1)
    return cat[owner], numeric


def label_compact_features(label: HTSLabel, vocab: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """``compact_features`` of an aligned label, phone by phone over its frames."""
    contexts = phone_contexts(label)
    return compact_features(contexts, label.frames().reshape(len(contexts), -1).sum(axis=1), vocab)


def manifest_vocabularies(columns: dict[str, list[str]]) -> dict[str, list[str]]:
    """The vocabularies by name from a manifest's ``ling_cat`` spec (column -> values)."""
    return {FIELD_VOCABULARY[column]: values for column, values in columns.items()}
