"""A better start than flat: models first trained on speech Festival synthesises, where
every phone boundary is known.

The corpus's own transcripts are synthesised with an installed Festival voice (the same
front-end, so the same phone set; vowel reduction off, as CMU Arctic's front-end), and
each phone's frames, split evenly among its five states, train the first Gaussians
(`train_aligner`'s ``bootstrap``). Re-estimation on the corpus then moves them to its
speakers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soxr

from ...demo import RATE, DemoSpeaker, synthesize
from ...workers import ordered_threads
from ..hts import HTSLabel
from .features import RATE as ALIGNER_RATE
from .train import TrainingUtterance

#: a male diphone voice (fast; its segments are its phones) and a female HTS voice: on the
#: demo, both together beat either alone (bench/align.py)
DEFAULT_BOOTSTRAP_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")

#: together they hold every phone of Festival's US phone set (rare ones, oy uh zh aw,
#: several times): one is kept in the bootstrap when it has a phone that the training
#: transcripts lack, so that no phone is left without a model
COVERAGE_TEXTS = (
    "The boy enjoyed the noise of the toy in the moist soil.",
    "She took a good look at the wooden hook by the brook.",
    "The usual measure of pleasure is a casual vision in beige.",
    "How now, brown cow, out of the house and down the mountain.",
    "Thank the thin thief for the three things he brought with them.",
    "Judge Chuck chose a cheap jar of orange juice.",
    "Ring the king's bell, singing a long song.",
    "Her early bird heard the first word.",
    "Yes, you usually yell at yellow yachts.",
    "Father calls all the dogs to the hot pot, then waits by the gate.",
)


def bootstrap_utterances(
    texts: Sequence[str],
    *,
    voices: Sequence[str] = DEFAULT_BOOTSTRAP_VOICES,
    workdir: Path | None = None,
    threads: int = 1,
) -> list[TrainingUtterance]:
    """Festival's speech of each distinct text of ``texts`` in each of ``voices`` (at
    16 kHz, the aligner's rate) with labels timed by its own phone boundaries, plus the
    `COVERAGE_TEXTS` that hold a phone the texts lack; each voice is a speaker of its own
    (CMVN).

    The labels' contexts are the bare phone names (all the aligner needs of them).
    ``threads``: voices synthesised at once (one Festival process each).
    """
    distinct = list(dict.fromkeys(texts))  # corpora repeat prompts (every VCTK speaker reads the same ones)
    coverage = [t for t in dict.fromkeys(COVERAGE_TEXTS) if t not in distinct]
    out = []
    synthesised = ordered_threads(lambda v: _synthesise(v, distinct + coverage, workdir), voices, threads)
    for spoken in synthesised:
        have = {p for u in spoken[: len(distinct)] for p in u.label.contexts}
        out += spoken[: len(distinct)]
        out += [u for u in spoken[len(distinct) :] if set(u.label.contexts) - have]
    return out


def _synthesise(voice: str, texts: list[str], workdir: Path | None) -> list[TrainingUtterance]:
    speaker = DemoSpeaker("bootstrap", "bootstrap", "M", voice, 105.0, 1.0)
    with tempfile.TemporaryDirectory(prefix="featprep-bootstrap-") as tmp:
        where = Path(workdir) / voice if workdir is not None else Path(tmp)
        synths = synthesize(speaker, {f"b{i}": t for i, t in enumerate(texts)}, where)
    out = []
    for synth in (synths[f"b{i}"] for i in range(len(texts))):  # in the order of texts
        phones = [p for *_, p in synth.segments]
        start = np.array([round(s * 1e7) for s, *_ in synth.segments], np.int64)
        end = np.array([round(e * 1e7) for _, e, _ in synth.segments], np.int64)
        audio = soxr.resample(synth.audio, RATE, ALIGNER_RATE, quality="HQ")
        out.append(TrainingUtterance(voice, audio, ALIGNER_RATE, HTSLabel(phones, start, end)))
    return out
