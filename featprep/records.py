"""Records that flow between stages: speakers, utterances and rejections."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Stable reason codes of ``rejected.tsv``; the stage that emits each is in parentheses.
REASONS: dict[str, str] = {
    "excluded_speaker": "speaker excluded by the recipe (discover)",
    "missing_text": "audio without a transcript (discover)",
    "empty_text": "transcript is empty or whitespace (discover)",
    "bad_id": "utterance or speaker id with characters unsafe in files and tables (discover)",
    "text_encoding": "transcript is not valid UTF-8 (discover)",
    "missing_audio": "transcript without audio (discover)",
    "misplaced_file": "file named for another speaker than the speaker folder holding it (discover)",
    "unreadable_text": "transcript cannot be read: no permission, a link loop, not a file (discover)",
    "unreadable_folder": "a speaker's folder cannot be listed: its utterances are not known (discover)",
    "duplicate_id": "utterance id seen before; the first in path order is kept (check)",
    "unreadable_audio": "audio is not a readable file (discover) or cannot be decoded (check)",
    "empty_audio": "audio file has no samples (check)",
    "speaking_rate": "characters per second far from the speaker's median (check)",
    "truncated_audio": "file shorter than its header declares (check, audio)",
    "missing_label": "no label file for the utterance (labels)",
    "bad_label": "label file unreadable, malformed or without edge silences (labels, linguistic)",
    "label_mismatch": "labels do not fit the audio or the transcript (labels, audio)",
    "text_too_long": "transcript longer than labels.max_text_chars, not given to Festival (labels)",
    "festival_timeout": "Festival did not finish the utterance within labels.festival_timeout (labels)",
    "align_outlier": "alignment score per frame far below the speaker's median: transcript, speaker or audio "
    "not what the others are (labels, align)",
    "nan_inf": "audio has NaN or infinite samples (audio)",
    "digital_silence": "every sample is zero (audio)",
    "near_silent": "peak level below the recipe's threshold (audio)",
    "clipping": "too many samples at full scale (audio)",
    "too_short": "shorter than the recipe's minimum after trimming (audio)",
    "too_long": "longer than the recipe's maximum after trimming (audio)",
    "no_voiced": "F0 undefined in every frame: no voiced speech (acoustic)",
}


@dataclass
class Speaker:
    """One speaker of a corpus.

    ``gender`` is ``"M"``, ``"F"`` or ``"unknown"``; ``custom`` holds corpus extras
    (accent, region, comments).
    """

    id: str
    gender: str = "unknown"
    age: int | None = None
    custom: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gender not in ("M", "F", "unknown"):
            raise ValueError(f"speaker {self.id}: gender must be M, F or unknown, found {self.gender!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Utterance:
    """One utterance as discovered: ids, transcript and where its audio lives.

    ``audio_path`` is relative to the corpus root so that outputs do not depend on where
    the corpus is mounted. Header fields (``sample_rate``, ``num_samples``, ``channels``)
    are filled by the check stage.
    """

    id: str
    speaker: str
    text: str
    audio_path: str
    sample_rate: int = 0
    num_samples: int = 0
    channels: int = 0
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_seconds(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Utterance:
        return cls(**d)


@dataclass(frozen=True)
class Rejection:
    """An utterance that was dropped, with the stage, a code from `REASONS` and a detail."""

    utterance: str
    speaker: str
    stage: str
    code: str
    detail: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        if self.code not in REASONS:
            raise ValueError(f"unknown rejection code {self.code!r}")
