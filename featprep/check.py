"""The ``check`` step: what can be rejected before any audio is decoded.

Reads every audio header (``unreadable_audio``, ``empty_audio``), drops repeated
utterance ids (``duplicate_id``) and transcripts that cannot belong to their audio
(``speaking_rate``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .audio import probe
from .errors import Rejected
from .records import Rejection, Utterance


def read_headers(
    utterances: list[Utterance],
    root: str,
    *,
    threads: int = 8,
    progress: Callable[[], None] | None = None,
) -> list[Rejection]:
    """Fill sample rate, length and channels from each file's header, in place.

    Headers are read by a thread pool: libsndfile releases the GIL, and on network file
    systems the latency, not the CPU, is the cost.
    """

    def one(utt: Utterance) -> Rejection | None:
        try:
            utt.sample_rate, utt.num_samples, utt.channels = probe(os.path.join(root, utt.audio_path))
            if utt.num_samples == 0:
                raise Rejected("empty_audio", "header declares 0 samples")
        except Rejected as r:
            return Rejection(utt.id, utt.speaker, "check", r.code, r.detail, utt.audio_path)
        finally:
            if progress:
                progress()
        return None

    with ThreadPoolExecutor(threads) as pool:
        return [r for r in pool.map(one, utterances) if r is not None]


def find_duplicates(utterances: list[Utterance]) -> list[Rejection]:
    """Reject every repeat of an utterance id; the first in audio-path order is kept."""
    seen: dict[str, str] = {}
    rejections = []
    for utt in sorted(utterances, key=lambda u: u.audio_path):
        if utt.id in seen:
            detail = f"same id as {seen[utt.id]}"
            rejections.append(Rejection(utt.id, utt.speaker, "check", "duplicate_id", detail, utt.audio_path))
        else:
            seen[utt.id] = utt.audio_path
    return rejections


def speaking_rate_outliers(
    utterances: list[Utterance], *, factor: float, min_utterances: int
) -> list[Rejection]:
    """Reject utterances whose characters per second are ``factor`` off the speaker median.

    The rate uses letters and digits of the transcript over the raw duration (silences
    included, hence a loose factor): it catches transcripts paired with the wrong audio.
    """
    rates: dict[str, list[tuple[Utterance, float]]] = defaultdict(list)
    for utt in utterances:
        chars = sum(c.isalnum() for c in utt.text)
        rates[utt.speaker].append((utt, chars / max(utt.raw_seconds, 1e-3)))
    rejections = []
    for items in rates.values():
        if len(items) < min_utterances:
            continue
        median = float(np.median([r for _, r in items]))
        for utt, rate in items:
            if not median / factor <= rate <= median * factor:
                detail = f"{rate:.1f} chars/s, speaker median {median:.1f} (factor {factor})"
                rejections.append(
                    Rejection(utt.id, utt.speaker, "check", "speaking_rate", detail, utt.audio_path)
                )
    return rejections


def check(
    utterances: list[Utterance],
    root: str,
    clean: dict[str, Any],
    progress: Callable[[], None] | None = None,
) -> tuple[list[Utterance], list[Rejection]]:
    """Run every check; return the surviving utterances (input order) and the rejections."""
    rejections = read_headers(utterances, root, progress=progress)
    rejections += find_duplicates(utterances)
    dropped = {(r.utterance, r.path) for r in rejections}
    alive = [u for u in utterances if (u.id, u.audio_path) not in dropped]
    rejections += speaking_rate_outliers(
        alive,
        factor=clean["speaking_rate_factor"],
        min_utterances=clean["speaking_rate_min_utterances"],
    )
    dropped = {(r.utterance, r.path) for r in rejections}
    return [u for u in utterances if (u.id, u.audio_path) not in dropped], rejections
