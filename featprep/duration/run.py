"""A trained duration run: whole-frame durations of new labels, and labels timed by them."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FeatprepError
from ..io import load_into, load_weights
from ..labels.hts import FRAME_UNITS, HTSLabel
from ..labels.linguistic import PHONE_MODES, STATE_MODES, phone_contexts
from ..labels.matching import CompiledQuestions
from ..labels.questions import load_questions
from ..normalise import Normaliser
from ..samplernn.run import read_run_info, seed_wav_vector, speaker_position
from .model import DurationModel, DurationModelConfig
from .train import KIND, DurationConfig, whole_frames

#: what a duration run's config.json holds, as `DurationRun` reads it
_TABLES = {
    "model": dict,
    "train": dict,
    "speakers": list,
    "corpus": str,
    "questions": list,
    "unit": str,
    "linguistic": dict,
}


def run_kind(folder: str | Path) -> str:
    """``duration`` or ``samplernn``: the model a run folder trained (its config.json says)."""
    info = read_run_info(Path(folder))
    return info.get("kind", "samplernn") if isinstance(info, dict) else "samplernn"


class DurationRun:
    """``config.json`` and ``checkpoint.pt`` of a duration run folder, with the corpus's
    statistics its inputs and outputs are normalised with."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        info = read_run_info(self.folder)
        damaged = f"{self.folder}/config.json is damaged"
        if not isinstance(info, dict) or info.get("kind", "samplernn") != KIND:
            raise FeatprepError(
                f"{self.folder} is not a duration model run (featprep train --model duration)"
            )
        if not all(isinstance(info.get(k), t) for k, t in _TABLES.items()):
            raise FeatprepError(f"{damaged}: expected the tables {', '.join(_TABLES)}")
        if not isinstance(info["linguistic"].get("questions"), str):
            raise FeatprepError(f"{damaged}: expected the question set's name in linguistic.questions")
        self.info: dict[str, Any] = info
        try:
            self.cfg = DurationConfig(**info["train"])
            self.model = DurationModel(DurationModelConfig(**info["model"]))
        except (TypeError, ValueError, FeatprepError) as e:
            raise FeatprepError(f"{damaged}: its model cannot be built ({e})") from None
        checkpoint = self.folder / "checkpoint.pt"
        saved = load_weights(checkpoint, "training checkpoint")
        if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
            raise FeatprepError(f"{checkpoint} is not a featprep training checkpoint (no 'model')")
        load_into(self.model, saved["model"], checkpoint, "the model of config.json")
        self.model.eval()
        self.unit: str = info["unit"]
        self.speakers: list[str] = info["speakers"]

    @cached_property
    def norms(self) -> tuple[Normaliser, Normaliser]:
        """The global normalisers of the inputs (``ling_phone``) and of the durations."""
        corpus = self.info["corpus"]
        return Normaliser.load(corpus, "ling_phone"), Normaliser.load(corpus, "durations")

    @cached_property
    def questions(self) -> CompiledQuestions:
        """The run's question set, as its corpus answered it (checked against config.json)."""
        compiled = CompiledQuestions(load_questions(self.info["linguistic"]["questions"]))
        if compiled.questions.names != self.info["questions"]:
            raise FeatprepError(
                f"{self.folder}: the question set {self.info['linguistic']['questions']!r} has changed "
                "since the run was trained"
            )
        return compiled

    def check_voice(self, voice: Any) -> None:
        """That the SampleRNN run ``voice`` (`samplernn.run.Run`) can read labels this run
        times: the same questions, and frame features its labels' alignment can give."""
        ours, theirs = self.info["questions"], voice.questions.questions.names
        if ours != theirs:
            raise FeatprepError(
                f"duration run {self.folder} answers {len(ours)} questions "
                f"({self.info['linguistic']['questions']}), voice run {voice.folder} {len(theirs)} "
                f"({voice.info['linguistic']['questions']}): train both on one question set"
            )
        mode = voice.info["linguistic"]["subphone_features"]
        allowed = STATE_MODES if self.unit == "state" else PHONE_MODES
        if mode not in allowed:
            raise FeatprepError(
                f"voice run {voice.folder} reads frame features {mode!r}, which {self.unit} durations "
                f"of duration run {self.folder} cannot give (they give {', '.join(allowed)})"
            )

    def speaker_input(self, speaker: str) -> torch.Tensor:
        """What the model takes for a corpus speaker: its index, or its fixed PASE vector."""
        index = speaker_position(self.speakers, speaker, f"duration run {self.folder}")
        if self.cfg.speaker_mode != "pase_seed":
            return torch.tensor([index])
        return self._seeds.fixed(index)[None]

    @cached_property
    def _seeds(self):  # noqa: ANN202 - a SpeakerSource (read once: every speaker's PASE windows)
        from ..samplernn.speakers import SpeakerSource

        return SpeakerSource(
            "pase_seed", Path(self.info["corpus"]), self.speakers, self.cfg, torch.device("cpu")
        )

    def speaker_from_wav(self, path: str | Path) -> torch.Tensor:
        """A pase_seed duration run's speaker vector from a recording."""
        if self.cfg.speaker_mode != "pase_seed":
            raise FeatprepError(
                f"duration run {self.folder} knows its corpus's speakers only (speaker_mode "
                f"{self.cfg.speaker_mode}): --seed-wav needs one trained with speaker_mode=pase_seed"
            )
        return seed_wav_vector(self.info, path, run=f"duration run {self.folder}")

    @torch.no_grad()
    def frames(self, phone_rows: np.ndarray, who: torch.Tensor) -> np.ndarray:
        """Whole frames per state or phone (phones, units), int64, of one utterance's phone
        rows (question answers, as stored in ``ling_phone``) for the speaker input ``who``."""
        inputs, targets = self.norms
        phones = torch.from_numpy(inputs(phone_rows))[None]
        predicted = self.model(phones, torch.tensor([len(phone_rows)]), who)[0].numpy()
        return whole_frames(predicted, targets)

    def time(self, label: HTSLabel, who: torch.Tensor) -> tuple[HTSLabel, np.ndarray]:
        """``label``'s phones timed by the model (its own times, if any, dropped): labels
        aligned by state (states 2..6) or by phone as the run predicts, and the frames."""
        contexts = phone_contexts(label)
        frames = self.frames(self.questions.evaluate(contexts), who)
        return timed_label(contexts, frames), frames


def timed_label(contexts: list[str], frames: np.ndarray) -> HTSLabel:
    """Labels of one context per phone timed by ``frames`` (phones, units): one line per
    phone, or per state (numbered 2.. as Merlin's) with several units."""
    ends = np.cumsum(frames.ravel()) * FRAME_UNITS
    starts = ends - frames.ravel() * FRAME_UNITS
    n = frames.shape[1]
    if n == 1:
        return HTSLabel(list(contexts), starts, ends)
    lines = [c for c in contexts for _ in range(n)]
    return HTSLabel(lines, starts, ends, np.tile(np.arange(2, 2 + n), len(contexts)))
