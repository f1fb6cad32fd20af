"""The ``audio`` stage: decode, check levels, downmix, resample to 16 kHz, trim."""

from __future__ import annotations

import os
from typing import ClassVar

import pyarrow as pa

from .. import SAMPLE_RATE
from ..errors import Rejected
from ..stage import Item, Stage
from .decode import downmix, read_audio
from .levels import check_levels
from .resample import resample, to_int16
from .trim import speech_bounds, trim_bounds


class AudioStage(Stage):
    """Turn an utterance's file into trimmed 16 kHz int16 audio on the frame grid.

    With labels (the ``labels`` stage ran first), the trim follows the labelled speech
    plus ``labels.margin_seconds``; energy-detected speech outside the labelled span by
    more than ``labels.max_boundary_error`` rejects the utterance (``label_mismatch``).

    Index columns: ``trim_start`` / ``trim_end`` are sample positions (16 kHz, end
    exclusive) in the resampled, untrimmed signal; ``raw_trim_start`` /
    ``raw_trim_end`` are the same positions in seconds of the raw file. A raw sample
    index is ``round(seconds * raw_sample_rate)``.
    """

    name = "audio"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "num_samples": pa.int64(),
        "trim_start": pa.int64(),
        "trim_end": pa.int64(),
        "raw_trim_start": pa.float64(),
        "raw_trim_end": pa.float64(),
        "downmixed": pa.bool_(),
        "resampled": pa.bool_(),
    }

    def process(self, item: Item) -> None:
        utt = item.utterance
        clean, trim = self.recipe["clean"], self.recipe["trim"]
        raw, sr = read_audio(os.path.join(self.corpus_root, utt.audio_path), expected_samples=utt.num_samples)
        if raw.size == 0:
            raise Rejected("empty_audio", "no samples decoded")
        check_levels(
            raw,
            near_silent_dbfs=clean["near_silent_dbfs"],
            clip_level=clean["clip_level"],
            clipping_fraction=clean["clipping_fraction"],
        )
        audio = resample(downmix(raw), sr, SAMPLE_RATE)
        bounds = speech_bounds(
            audio,
            top_db=trim["top_db"],
            noise_margin_db=trim["noise_margin_db"],
            noise_percentile=trim["noise_percentile"],
            smooth_frames=trim["smooth_frames"],
        )
        if bounds is None:
            raise Rejected("near_silent", "no frame above the trimming threshold")
        margin = trim["margin_seconds"]
        labelled = item.data.get("speech_span")
        if labelled is not None:
            # labels know where speech is; energy only checks that they fit this audio
            tolerance = round(self.recipe["labels"]["max_boundary_error"] * SAMPLE_RATE)
            if bounds[0] < labelled[0] - tolerance or bounds[1] > labelled[1] + tolerance:
                raise Rejected(
                    "label_mismatch",
                    f"speech found at {bounds[0] / SAMPLE_RATE:.2f}-{bounds[1] / SAMPLE_RATE:.2f} s, "
                    f"labelled {labelled[0] / SAMPLE_RATE:.2f}-{labelled[1] / SAMPLE_RATE:.2f} s",
                )
            bounds = (min(labelled[0], len(audio)), min(labelled[1], len(audio)))
            margin = self.recipe["labels"]["margin_seconds"]
        start, end = trim_bounds(*bounds, len(audio), margin=round(margin * SAMPLE_RATE))
        seconds = (end - start) / SAMPLE_RATE
        if seconds < clean["min_seconds"]:
            raise Rejected("too_short", f"{seconds:.2f} s after trimming < {clean['min_seconds']} s")
        if seconds > clean["max_seconds"]:
            raise Rejected("too_long", f"{seconds:.2f} s after trimming > {clean['max_seconds']} s")
        item.audio = to_int16(audio[start:end])
        item.fields.update(
            num_samples=end - start,
            trim_start=start,
            trim_end=end,
            raw_trim_start=start / SAMPLE_RATE,
            raw_trim_end=end / SAMPLE_RATE,
            downmixed=raw.shape[1] > 1,
            resampled=sr != SAMPLE_RATE,
        )
