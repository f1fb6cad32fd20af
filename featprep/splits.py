"""Speaker roles and per-speaker train/valid/test splits, deterministic for a seed.

Roles follow the SSW 2019 system: per gender, the N speakers with the most audio are
``modeling`` speakers and the K with the least of the rest are ``adaptation`` speakers;
any other speaker is ``unused``. Within a speaker, a seeded shuffle of the utterances
fills ``test`` until it holds the recipe's seconds, then ``valid``, and the rest is
``train``. Durations are the raw durations from the file headers: the split is decided
before any audio is decoded, so that shards can be planned per split.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import numpy as np

from .errors import RecipeError
from .records import Speaker, Utterance

SPLITS = ("train", "valid", "test")
ROLES = ("modeling", "adaptation", "unused")
#: the roles a model learns from: ``adaptation`` speakers stay unseen, for evaluation from
#: a seed recording (`featprep.samplernn.evaluate`, ``featprep experiment``)
TRAINED_ROLES = ("modeling",)


def assign_roles(
    speakers: list[Speaker],
    seconds: dict[str, float],
    *,
    modeling_per_gender: int | str = "all",
    adaptation_per_gender: int = 0,
) -> dict[str, str]:
    """Speaker id -> role. Ties in duration are broken by speaker id."""
    if modeling_per_gender == "all":
        return {s.id: "modeling" for s in speakers}
    if not isinstance(modeling_per_gender, int) or modeling_per_gender < 0:
        raise RecipeError(
            f'split.modeling_per_gender must be "all" or a count, found {modeling_per_gender!r}'
        )
    roles = {}
    by_gender: dict[str, list[Speaker]] = defaultdict(list)
    for s in speakers:
        by_gender[s.gender].append(s)
    for group in by_gender.values():
        ranked = sorted(group, key=lambda s: (-seconds.get(s.id, 0.0), s.id))
        modeling = ranked[:modeling_per_gender]
        rest = ranked[modeling_per_gender:]
        adaptation = rest[len(rest) - adaptation_per_gender :] if adaptation_per_gender else []
        for s in group:
            roles[s.id] = "modeling" if s in modeling else "adaptation" if s in adaptation else "unused"
    return roles


def split_speaker(
    utterances: list[Utterance],
    *,
    seed: int,
    test_seconds: float,
    valid_seconds: float,
    max_heldout_fraction: float,
) -> dict[str, str]:
    """Utterance id -> split for one speaker's utterances.

    The shuffle is seeded by ``seed`` and the speaker id, so one speaker's split does not
    change when other speakers are added or removed.
    """
    if not utterances:
        return {}
    ordered = sorted(utterances, key=lambda u: u.id)
    rng = np.random.default_rng([seed, zlib.crc32(ordered[0].speaker.encode())])
    order = [ordered[i] for i in rng.permutation(len(ordered))]
    cap = int(len(order) * max_heldout_fraction)
    result: dict[str, str] = {}
    pos = 0
    for split, target in (("test", test_seconds), ("valid", valid_seconds)):
        taken, total = 0, 0.0
        while pos < len(order) and total < target and taken < cap:
            result[order[pos].id] = split
            total += order[pos].raw_seconds
            taken += 1
            pos += 1
    for utt in order[pos:]:
        result[utt.id] = "train"
    return result


def assign_splits(
    speakers: list[Speaker], utterances: list[Utterance], split: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Apply the recipe's ``[split]`` table: (speaker -> role, utterance -> split).

    Utterances of ``unused`` speakers get no split.
    """
    seconds: dict[str, float] = defaultdict(float)
    per_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        seconds[utt.speaker] += utt.raw_seconds
        per_speaker[utt.speaker].append(utt)
    roles = assign_roles(
        speakers,
        seconds,
        modeling_per_gender=split["modeling_per_gender"],
        adaptation_per_gender=split["adaptation_per_gender"],
    )
    splits: dict[str, str] = {}
    for spk, role in roles.items():
        if role == "unused":
            continue
        prefix = "adaptation_" if role == "adaptation" else ""
        splits.update(
            split_speaker(
                per_speaker[spk],
                seed=split["seed"],
                test_seconds=split[f"{prefix}test_seconds"],
                valid_seconds=split[f"{prefix}valid_seconds"],
                max_heldout_fraction=split["max_heldout_fraction"],
            )
        )
    return roles, splits
