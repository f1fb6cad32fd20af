"""A trained run folder: its model, and conditioning for new labels or text."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import FRAME_SHIFT, SAMPLE_RATE
from ..device import resolve_device, resolve_dtype
from ..errors import ArgumentError, FeatprepError, OutputError
from ..io import load_into, load_weights
from ..labels.compact import label_compact_features, manifest_vocabularies
from ..labels.hts import HTSLabel
from ..labels.linguistic import linguistic_features
from ..labels.matching import CompiledQuestions
from ..labels.questions import load_questions
from ..manifest import read_manifest
from ..progress import progress_bar
from .conditioning import FeatureSpec, pack, parse_spec
from .data import Normalisers
from .model import ModelConfig, SampleRNN

#: what a run's config.json holds, as `Run` reads it
_RUN_TABLES = {"model": dict, "train": dict, "speakers": list, "corpus": str}


class Run:
    """``config.json`` and ``checkpoint.pt`` of a run folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.info: dict[str, Any] = read_run_info(self.folder)
        if isinstance(self.info, dict) and self.info.get("kind", "samplernn") != "samplernn":
            raise FeatprepError(
                f"{self.folder} is a {self.info['kind']} model run, not a SampleRNN voice"
                + (": give it to generate as --duration-model" if self.info["kind"] == "duration" else "")
            )
        checkpoint = self.folder / "checkpoint.pt"
        self.model = self._model()
        load_into(self.model, self._saved(checkpoint, "model"), checkpoint, "the model of config.json")
        self.model.eval()
        #: speaker vectors per tuple of speakers, built once each (`speaker_source`)
        self._sources: dict[tuple[str, ...], Any] = {}

    def _model(self) -> SampleRNN:
        """The model config.json describes, or a `FeatprepError` for a damaged config.json."""
        damaged = f"{self.folder}/config.json is damaged"
        info = self.info
        if not isinstance(info, dict) or not all(isinstance(info.get(k), t) for k, t in _RUN_TABLES.items()):
            raise FeatprepError(f"{damaged}: expected the tables {', '.join(_RUN_TABLES)}")
        defaults = ModelConfig()
        try:
            config = ModelConfig(**info["model"])
            wrong = [
                f.name
                for f in fields(config)
                if type(getattr(config, f.name)) is not type(getattr(defaults, f.name))
            ]
            if wrong:
                raise TypeError(f"{wrong[0]} is {getattr(config, wrong[0])!r}")
            return SampleRNN(config)
        except (TypeError, ValueError, RuntimeError) as e:  # what a constructor says of a bad value
            raise FeatprepError(f"{damaged}: its model cannot be built ({e})") from None

    @staticmethod
    def _saved(checkpoint: Path, part: str) -> dict[str, torch.Tensor]:
        """One part (``model``, ``encoder``) of a training checkpoint, read as weights only."""
        saved = load_weights(checkpoint, "training checkpoint")
        if not isinstance(saved, dict) or not isinstance(saved.get(part), dict):
            raise FeatprepError(f"{checkpoint} is not a featprep training checkpoint (no {part!r})")
        return saved[part]

    def speaker_index(self, speaker: str) -> int:
        return speaker_position(self.info["speakers"], speaker)

    def speaker_source(self, speakers: Sequence[str] | None = None):  # noqa: ANN201 - a SpeakerSource, or None
        """The PASE speaker vectors of this run (pase_seed, pase_trained with its weights) for
        ``speakers`` of its corpus: its own (None), or others, such as held-out
        ``adaptation`` speakers, each from a seed recording of theirs (`SpeakerSource`)."""
        mode = self.info["train"]["speaker_mode"]
        if mode not in ("pase_seed", "pase_trained"):
            return None
        speakers = tuple(self.info["speakers"] if speakers is None else speakers)
        sources = self._sources
        if speakers not in sources:
            from .speakers import SpeakerSource
            from .train import TrainConfig

            cfg = TrainConfig(**self.info["train"])
            source = SpeakerSource(mode, Path(self.info["corpus"]), list(speakers), cfg, torch.device("cpu"))
            if source.encoder is not None:
                checkpoint = self.folder / "checkpoint.pt"
                load_into(
                    source.encoder, self._saved(checkpoint, "encoder"), checkpoint, "the run's PASE encoder"
                )
                source.encoder.eval()
            sources[speakers] = source
        return sources[speakers]

    def speaker_input(self, speaker: str) -> torch.Tensor:
        """What the model takes for ``speaker``: its index, or its fixed PASE vector."""
        index = self.speaker_index(speaker)
        source = self.speaker_source()
        return torch.tensor([index]) if source is None else source.fixed(index)[None]

    def speaker_from_wav(self, path: str | Path, start_seconds: float = 0.5) -> torch.Tensor:
        """A pase_seed run's speaker vector from a recording: the mean of its PASE frames
        over the run's seed window, starting ``start_seconds`` in, by the corpus's encoder."""
        return seed_wav_vector(self.info, path, start_seconds, f"voice run {self.folder}")

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
            arrays["ling"] = linguistic_features(label, self.questions, subphone_features=subphone)
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
    def questions(self) -> CompiledQuestions:
        return CompiledQuestions(load_questions(self.info["linguistic"]["questions"]))

    @cached_property
    def _normalisers(self) -> Normalisers:
        return Normalisers(self.info["corpus"])


def read_run_info(folder: Path) -> Any:
    """A run folder's config.json, once it holds a checkpoint; one line otherwise."""
    try:
        info = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise FeatprepError(f"{folder} is not a training run (no config.json): run featprep train") from None
    except NotADirectoryError:
        raise FeatprepError(f"{folder} is not a training run: a file, not a run folder") from None
    except OSError as e:
        raise FeatprepError(f"{folder}/config.json cannot be read: {e.strerror}") from None
    except ValueError as e:
        raise FeatprepError(f"{folder}/config.json is damaged: {e}") from None
    checkpoint = folder / "checkpoint.pt"
    if not checkpoint.is_file():
        raise FeatprepError(f"{checkpoint} does not exist: the run has not saved a checkpoint yet")
    return info


def speaker_position(speakers: list[str], speaker: str, run: str = "this run") -> int:
    """``speaker``'s row in a run's speaker list, or one line naming the speakers it knows."""
    if speaker not in speakers:
        # every name of a short list; the first 10 and a count of the rest of a long one
        shown = ", ".join(speakers[:10]) + (f" and {len(speakers) - 10} more" if len(speakers) > 10 else "")
        raise FeatprepError(
            f"speaker {speaker!r} is not in {run}; it knows {len(speakers)} speakers: {shown}"
        )
    return speakers.index(speaker)


def seed_wav_vector(
    info: dict[str, Any], path: str | Path, start_seconds: float = 0.5, run: str = "this run"
) -> torch.Tensor:
    """A pase_seed run's (``info``: its config.json; ``run`` names it in errors) speaker
    vector from a recording: the mean of its PASE frames over the run's seed window,
    starting ``start_seconds`` in, by the corpus's encoder; (1, E)."""
    mode = info["train"]["speaker_mode"]
    if mode != "pase_seed":
        raise FeatprepError(
            f"--seed-wav needs a run trained with speaker_mode=pase_seed; {run}'s is {mode!r}"
        )
    if not Path(path).is_file():  # soundfile would say only "System error"
        raise FeatprepError(f"--seed-wav {path} is not a file: expected a recording of the speaker")
    from ..audio import downmix, read_audio, resample
    from ..errors import Rejected
    from ..pase import load_encoder
    from ..pase.extract import extract

    pase = read_manifest(info["corpus"])["recipe"]["pase"]
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
    seconds = info["train"]["seed_seconds"]
    begin = min(int(start_seconds * 16000), max(0, len(wave) - int(seconds * 16000)))
    window = wave[begin : begin + int(seconds * 16000)]
    if len(window) < 1600:
        raise FeatprepError(f"{path} is too short for a PASE seed ({len(wave) / 16000:.2f} s)")
    (frames,) = extract(encoder, [window], device="cpu")
    return torch.from_numpy(frames.mean(axis=0, dtype=np.float32))[None]


def generate_to(
    run_folder: str | Path,
    out: str | Path,
    *,
    labels: Sequence[str | Path] = (),
    texts: Sequence[str] = (),
    speaker: str | None = None,
    seed_wav: str | Path | None = None,
    duration_model: str | Path | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    dtype: torch.dtype | str = torch.float32,
    device: str = "auto",
    progress: bool = False,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Generate one utterance per label file and per text with a trained run (``featprep
    generate``), as a corpus ``speaker`` or, for pase_seed runs, as the speaker of
    ``seed_wav``. With ``duration_model`` (a duration run folder) every utterance's phones
    are timed by it (label files' own times are dropped); without, text gets Festival's
    predicted durations and label files keep their times. Returns an iterator that
    generates and writes them batch by batch, yielding each wav written (16 kHz) with its
    samples.

    One utterance with ``out`` ending in ``.wav`` is written there; otherwise ``out`` is a
    folder of ``LABELS-STEM.wav`` and ``text-NNN.wav``. The arguments and the output
    location are checked before anything is generated. ``progress``: a bar of the
    seconds of audio generated, on stderr.
    """
    from ..io import atomic_write_bytes, check_output_dir, wav_bytes
    from ..labels.frontend import merlin_normalise, text_to_labels
    from ..labels.hts import read_hts
    from .generate import Generator, check_sampling, generate_many

    labels, texts, out = [Path(p) for p in labels], list(texts), Path(out)
    if not labels and not texts:
        raise ArgumentError("give labels or texts (--labels, --text) to generate")
    check_sampling(batch_size, temperature, seed)
    if (speaker is None) == (seed_wav is None):
        raise ArgumentError("give a speaker or a seed recording (--speaker or --seed-wav), not both")
    names = [p.stem for p in labels] + [f"text-{i + 1:03d}" for i in range(len(texts))]
    single = len(names) == 1 and out.suffix.lower() == ".wav"
    twice = sorted({p for p in labels if names.count(p.stem) > 1}, key=str)
    if twice:  # each would be written to the same OUT/<stem>.wav, the last one winning
        raise ArgumentError(f"label files {', '.join(map(str, twice))} have the same name: rename one")
    if single and out.is_dir():
        raise OutputError(f"output {out} is a folder, not a .wav file")
    check_output_dir(out.parent if single else out)
    trained = Run(run_folder)
    who = trained.speaker_input(speaker) if speaker is not None else trained.speaker_from_wav(seed_wav)
    utterances = [read_hts(p) for p in labels]
    if texts:
        utterances += [merlin_normalise(label) for label in text_to_labels(texts)]
    if duration_model is not None:
        utterances = _timed(duration_model, trained, utterances, speaker, seed_wav)
    conditioning = [trained.conditioning(label, speaker) for label in utterances]  # no speaker: global
    requests = [(features, who, frames) for features, frames in conditioning]
    generator = Generator(trained.model.to(resolve_device(device)), dtype=resolve_dtype(dtype))
    audio = generate_many(generator, requests, batch_size=batch_size, temperature=temperature, seed=seed)
    targets = [out] if single else [out / f"{name}.wav" for name in names]
    seconds = sum(frames for _, frames in conditioning) * FRAME_SHIFT / SAMPLE_RATE

    def write() -> Iterator[tuple[Path, np.ndarray]]:
        with progress_bar(seconds, "s", enabled=progress, desc="generate") as bar:
            for target, samples in zip(targets, audio, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, wav_bytes(samples, SAMPLE_RATE))
                bar.update(len(samples) / SAMPLE_RATE)
                yield target, samples

    return write()


def _timed(
    folder: str | Path,
    voice: Run,
    utterances: list[HTSLabel],
    speaker: str | None,
    seed_wav: str | Path | None,
) -> list[HTSLabel]:
    """``utterances`` timed by the duration run ``folder`` for the speaker (checked to agree
    with the voice run first)."""
    from ..duration.run import DurationRun

    durations = DurationRun(folder)
    durations.check_voice(voice)
    who = durations.speaker_input(speaker) if speaker is not None else durations.speaker_from_wav(seed_wav)
    return [durations.time(label, who)[0] for label in utterances]
