"""A trained run folder: its model, and conditioning for new labels or text."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FeatprepError
from ..labels.compact import label_compact_features, manifest_vocabularies
from ..labels.hts import HTSLabel
from ..labels.linguistic import linguistic_features
from ..labels.matching import CompiledQuestions
from ..labels.questions import load_questions
from ..manifest import read_manifest
from .conditioning import FeatureSpec, pack, parse_spec
from .data import Normalisers
from .model import ModelConfig, SampleRNN


class Run:
    """``config.json`` and ``checkpoint.pt`` of a run folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.info: dict[str, Any] = json.loads((self.folder / "config.json").read_text())
        except FileNotFoundError:
            raise FeatprepError(
                f"{self.folder} is not a training run (no config.json): run featprep train"
            ) from None
        checkpoint = self.folder / "checkpoint.pt"
        if not checkpoint.is_file():
            raise FeatprepError(f"{checkpoint} does not exist: the run has not saved a checkpoint yet")
        self.model = SampleRNN(ModelConfig(**self.info["model"]))
        self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
        self.model.eval()

    def speaker_index(self, speaker: str) -> int:
        speakers = self.info["speakers"]
        if speaker not in speakers:
            # every name of a short list; the first 10 and a count of the rest of a long one
            shown = ", ".join(speakers[:10]) + (
                f" and {len(speakers) - 10} more" if len(speakers) > 10 else ""
            )
            raise FeatprepError(
                f"speaker {speaker!r} is not in this run; it knows {len(speakers)} speakers: {shown}"
            )
        return speakers.index(speaker)

    def speaker_source(self):  # noqa: ANN201 - a SpeakerSource, or None for the lookup modes
        """The PASE speaker vectors of this run (pase_seed, pase_trained with its weights)."""
        mode = self.info["train"]["speaker_mode"]
        if mode not in ("pase_seed", "pase_trained"):
            return None
        if getattr(self, "_source", None) is None:
            from .train import SpeakerSource, TrainConfig

            cfg = TrainConfig(**self.info["train"])
            source = SpeakerSource(
                mode, Path(self.info["corpus"]), self.info["speakers"], cfg, torch.device("cpu")
            )
            if source.encoder is not None:
                saved = torch.load(self.folder / "checkpoint.pt", map_location="cpu", weights_only=True)
                source.encoder.load_state_dict(saved["encoder"])
                source.encoder.eval()
            self._source = source
        return self._source

    def speaker_input(self, speaker: str) -> torch.Tensor:
        """What the model takes for ``speaker``: its index, or its fixed PASE vector."""
        index = self.speaker_index(speaker)
        source = self.speaker_source()
        return torch.tensor([index]) if source is None else source.fixed(index)[None]

    def speaker_from_wav(self, path: str | Path, start_seconds: float = 0.5) -> torch.Tensor:
        """A pase_seed run's speaker vector from a recording: the mean of its PASE frames
        over the run's seed window, starting ``start_seconds`` in, by the corpus's encoder."""
        if self.info["train"]["speaker_mode"] != "pase_seed":
            raise FeatprepError("--seed-wav needs a run trained with speaker_mode=pase_seed")
        from ..audio import downmix, read_audio, resample
        from ..errors import Rejected
        from ..manifest import read_manifest
        from ..pase import load_encoder
        from ..pase.extract import extract

        pase = read_manifest(self.info["corpus"])["recipe"]["pase"]
        encoder = load_encoder(
            pase["arch"],
            checkpoint=pase["checkpoint"] or None,
            random_init_seed=None if pase["checkpoint"] else pase["random_init_seed"],
        )
        try:
            audio, sr = read_audio(path)
        except Rejected as r:
            raise FeatprepError(f"{path}: {r.code}: {r.detail}") from None
        wave = resample(downmix(audio), sr, 16000)
        seconds = self.info["train"]["seed_seconds"]
        begin = min(int(start_seconds * 16000), max(0, len(wave) - int(seconds * 16000)))
        window = wave[begin : begin + int(seconds * 16000)]
        if len(window) < 1600:
            raise FeatprepError(f"{path} is too short for a PASE seed ({len(wave) / 16000:.2f} s)")
        (frames,) = extract(encoder, [window], device="cpu")
        return torch.from_numpy(frames.mean(axis=0, dtype=np.float32))[None]

    def conditioning(self, label: HTSLabel, speaker: str | None) -> tuple[np.ndarray | None, int]:
        """Packed, normalised frame features of ``label`` for ``speaker`` (None: global
        statistics), as the run was trained on them, and the frame count. Only streams
        computed from labels can be: ``ling`` and the compact ``ling_cat``/``ling_num``."""
        frames = label.num_frames()
        if self.info["features"] is None:
            return None, frames
        spec, vocab = self._label_spec
        arrays = {}
        if "ling" in spec.streams:
            subphone = self.info["linguistic"]["subphone_features"]
            arrays["ling"] = linguistic_features(label, self._questions, subphone_features=subphone)
        if vocab is not None:
            arrays["ling_cat"], arrays["ling_num"] = label_compact_features(label, vocab)
        return pack(spec, arrays, lambda stream, x: self._normalisers(stream, speaker)(x)), frames

    @cached_property
    def _label_spec(self) -> tuple[FeatureSpec, dict[str, list[str]] | None]:
        """The run's feature spec, checked to be computable from labels, and the compact
        set's vocabularies when it reads them (read once for all utterances)."""
        streams = {f["name"]: f for f in read_manifest(self.info["corpus"])["features"]}
        spec = parse_spec(self.info["features"], list(streams.values()))
        other = [s for s in spec.streams if s not in ("ling", "ling_cat", "ling_num")]
        if other:
            raise FeatprepError(
                f"generation from labels needs features computed from labels; this run's "
                f"{spec.text!r} also reads {other[0]!r}"
            )
        compact = {"ling_cat", "ling_num"} & set(spec.streams)
        return spec, manifest_vocabularies(streams["ling_cat"]["vocabularies"]) if compact else None

    @cached_property
    def _questions(self) -> CompiledQuestions:
        return CompiledQuestions(load_questions(self.info["linguistic"]["questions"]))

    @cached_property
    def _normalisers(self) -> Normalisers:
        return Normalisers(self.info["corpus"])
