"""The ``labels`` and ``linguistic`` stages of ``prepare``.

``labels`` (before ``audio``) finds each utterance's aligned full-context labels (see
`featprep.labels.sources`) and the span of labelled speech, which ``audio`` then trims
to. ``linguistic`` (after ``audio``) moves the labels by the trim offset, reconciles
their length with the audio's frames (the alignment contract) and writes Merlin's
features (``ling.npy``), the compact encoding (``ling_cat.npy``, ``ling_num.npy``) and
the duration model's phone-level stream (``ling_phone.npy``, ``durations.npy``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from .. import SAMPLE_RATE
from ..errors import FeatprepError, Rejected
from ..festival import voice_command
from ..records import Utterance
from ..stage import ArraySpec, Item, Stage
from .compact import FIELD_VOCABULARY, NUMERIC_COLUMNS, label_compact_features, vocabularies
from .context import CATEGORICAL
from .frontend import festival_batch, frontend_labels, merlin_normalise, utterance_to_labels
from .hts import FRAME_UNITS, HTSLabel, LabelError, phone_of, read_hts
from .linguistic import (
    DURATION_UNITS,
    FRAME_FEATURES,
    STATES_PER_PHONE,
    duration_targets,
    feature_names,
    frame_features,
    phone_contexts,
)
from .matching import CompiledQuestions
from .questions import load_questions
from .sources import SOURCES, label_path, speech_span, transfer_boundaries
from .textgrid import textgrid_phones
from .xwaves import Segment, read_xwaves

#: 100 ns label units per 16 kHz sample
UNITS_PER_SAMPLE = 10_000_000 // SAMPLE_RATE


class LabelStage(Stage):
    """Find the labels of each utterance and the span of labelled speech."""

    name = "labels"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "label_source": pa.string(),
        "label_path": pa.string(),
    }

    def __init__(self, recipe: dict, corpus_root: str, genders: dict[str, str] | None = None) -> None:
        super().__init__(recipe, corpus_root, genders)
        self.cfg = recipe["labels"]
        if self.cfg["source"] not in SOURCES:
            raise FeatprepError(f"labels.source must be one of {list(SOURCES)}, found {self.cfg['source']!r}")
        if self.cfg["source"] in ("arctic", "textgrid"):
            # the voice is pasted into Festival's script: only an installed voice's name passes
            voice_command(self.cfg["voice"], setting="labels.voice")
        self._batch: dict[str, HTSLabel | Rejected] = {}
        #: where the labels of an utterance of the shard came from, when not the source's own way
        self._fallback: dict[str, str] = {}
        self._aligned: dict | None = None

    @property
    def aligned(self) -> dict:
        """The align source's record (``labels.dir/aligner.json``, see
        `featprep.labels.align.corpus`): per speaker, fingerprint, scores, rejections."""
        if self._aligned is None:
            from .align.corpus import read_record

            self._aligned = read_record(Path(self.corpus_root) / self.cfg["dir"])
        return self._aligned

    def _aligner_entry(self, utt: Utterance) -> dict:
        """The aligner's record of ``utt``'s speaker ({} when it has none)."""
        return self.aligned.get("speakers", {}).get(utt.speaker, {})

    def _was_aligned(self, utt: Utterance) -> bool:
        """Whether the aligner's last run on ``utt``'s speaker aligned (or rejected) it."""
        entry = self._aligner_entry(utt)
        return utt.id in entry.get("scores", {}) or utt.id in entry.get("rejected", {})

    def _raise_aligner_rejection(self, utt: Utterance) -> None:
        """Raise `Rejected` with the aligner's code (``align_outlier``, ``clipping``, ...)
        when ``labels.dir/aligner.json`` records that it rejected ``utt``."""
        rejected = self._aligner_entry(utt).get("rejected", {})
        if utt.id in rejected:
            raise Rejected(*rejected[utt.id])

    def _read_aligned(self, utt: Utterance) -> tuple[HTSLabel, str]:
        """What the aligner wrote for ``utt`` in ``labels.dir`` (the align source, and
        CMU Arctic utterances without lab/), with its path; `Rejected` with the aligner's
        rejection, or ``missing_label``."""
        self._raise_aligner_rejection(utt)
        path = Path(self.corpus_root) / self.cfg["dir"] / utt.speaker / f"{utt.id}.lab"
        if not path.is_file():
            raise Rejected("missing_label", f"no {path}")
        try:
            label = read_hts(path)
        except LabelError as e:
            raise Rejected("bad_label", str(e)) from None
        # relative to the output folder (labels.dir is OUT/align): the same bytes wherever OUT is
        return label, f"{Path(self.cfg['dir']).name}/{utt.speaker}/{utt.id}.lab"

    def version(self) -> str:
        if not (self.cfg["source"] == "align" or self.cfg["source"] == "arctic" and self.cfg["dir"]):
            return super().version()
        # new alignments (a retrained model, a speaker aligned again) make shards stale
        speakers = {s: e["fingerprint"] for s, e in self.aligned.get("speakers", {}).items()}
        return f"{super().version()}:align:{self.aligned.get('model')}:{sorted(speakers.items())}"

    def begin_shard(self, utterances: list[Utterance]) -> None:
        source = self.cfg["source"]
        self._batch, self._fallback = {}, {}
        if source == "festival":
            self._batch_festival(utterances)
        elif source == "arctic":
            self._batch_arctic(utterances)
        elif source == "textgrid":
            self._batch_textgrid(utterances)

    def _batch_festival(self, utterances: list[Utterance]) -> None:
        present = []
        for utt in utterances:
            path = label_path(utt, self.cfg, self.corpus_root)
            if path.is_file():
                present.append((utt, path))
            else:
                self._batch[utt.id] = Rejected("missing_label", f"no {path}")
        self._batch.update(
            festival_batch(
                present,
                lambda paths, timeout: utterance_to_labels(paths, timeout=timeout),
                self.cfg["festival_timeout"],
            )
        )

    def _batch_arctic(self, utterances: list[Utterance]) -> None:
        present = []
        for utt in utterances:
            lab = Path(self.corpus_root) / utt.custom["lab"] if utt.custom.get("lab") else None
            if self.cfg["dir"] and (lab is None or not lab.is_file() or self._was_aligned(utt)):
                # prepare aligned the utterances without a usable lab/ into labels.dir
                try:
                    self._batch[utt.id], self._fallback[utt.id] = self._read_aligned(utt)
                except Rejected as r:
                    self._batch[utt.id] = r
            elif lab is None or not lab.is_file():
                self._batch[utt.id] = Rejected("missing_label", f"no lab/ phone labels for {utt.audio_path}")
            else:
                present.append((utt, lambda lab=lab: read_xwaves(lab)))
        self._transfer(present)

    def _batch_textgrid(self, utterances: list[Utterance]) -> None:
        present = []
        for utt in utterances:
            path = label_path(utt, self.cfg, self.corpus_root)
            if path.is_file():
                present.append((utt, lambda path=path: textgrid_phones(path)))
            else:
                self._batch[utt.id] = Rejected("missing_label", f"no {path}")
        self._transfer(present)

    def _transfer(self, present: list[tuple[Utterance, Callable[[], list[Segment]]]]) -> None:
        """Phone boundaries (each utterance's ``read()``) on the contexts of its transcript."""
        frontends = frontend_labels([u for u, _ in present], self.cfg)
        for utt, read in present:
            front = frontends[utt.id]
            if isinstance(front, Rejected):
                self._batch[utt.id] = front
                continue
            try:
                self._batch[utt.id] = transfer_boundaries(
                    front, read(), silences=self.cfg["silence"], max_edits=self.cfg["max_phone_edits"]
                )
            except Rejected as r:
                self._batch[utt.id] = r
            except FeatprepError as e:
                self._batch[utt.id] = Rejected("bad_label", str(e))

    def process(self, item: Item) -> None:
        utt, cfg = item.utterance, self.cfg
        if cfg["source"] == "none":
            item.fields.update(label_source="none", label_path="")
            return
        source = cfg["source"]
        if source == "align":
            label, where = self._read_aligned(utt)
        elif source == "dir":
            path = label_path(utt, cfg, self.corpus_root)
            if not path.is_file():
                # labels.dir written by `featprep align`: its reason, not a missing file
                self._raise_aligner_rejection(utt)
                raise Rejected("missing_label", f"no {path}")
            try:
                label = read_hts(path)
            except LabelError as e:
                raise Rejected("bad_label", str(e)) from None
            where = os.path.relpath(path, self.corpus_root)
        else:
            label = self._batch[utt.id]
            if isinstance(label, Rejected):
                raise label
            where = os.path.relpath(label_path(utt, cfg, self.corpus_root), self.corpus_root)
            if utt.id in self._fallback:
                source, where = "align", self._fallback[utt.id]
            elif source == "arctic":
                where = utt.custom["lab"]
        if not label.aligned:
            raise Rejected("bad_label", "labels have no times")
        if cfg["merlin_normalise"]:
            label = merlin_normalise(label, silence=label_silence(label, cfg["silence"]))
        start, end = speech_span(label, cfg["silence"])
        overrun = label.end[-1] / 1e7 - utt.raw_seconds
        if overrun > cfg["max_end_error"]:
            raise Rejected("label_mismatch", f"labels end {overrun:.3f} s after the audio")
        item.data["label"] = label
        item.data["speech_span"] = (start // UNITS_PER_SAMPLE, -(-end // UNITS_PER_SAMPLE))
        item.fields.update(label_source=source, label_path=where)


def label_silence(label: HTSLabel, silences: list[str]) -> str:
    """The silence symbol the labels use at their start (for merging runs of it)."""
    first = phone_of(label.contexts[0])
    return first if first in silences else silences[0]


class LinguisticStage(Stage):
    """Labels in trimmed time, reconciled to the audio's frames, to feature matrices."""

    name = "linguistic"
    columns: ClassVar[dict[str, pa.DataType]] = {"label_adjust_frames": pa.int32()}

    def __init__(self, recipe: dict, corpus_root: str, genders: dict[str, str] | None = None) -> None:
        super().__init__(recipe, corpus_root, genders)
        self.cfg = recipe["linguistic"]
        self.active = recipe["labels"]["source"] != "none"
        mode = self.cfg["subphone_features"]
        if mode not in FRAME_FEATURES:
            raise FeatprepError(
                f"linguistic.subphone_features must be one of {sorted(FRAME_FEATURES)}, found {mode!r}"
            )
        if self.cfg["duration_unit"] not in DURATION_UNITS:
            raise FeatprepError(
                f"linguistic.duration_unit must be one of {list(DURATION_UNITS)}, "
                f"found {self.cfg['duration_unit']!r}"
            )
        self._questions: CompiledQuestions | None = None
        self.vocab = vocabularies(self.cfg["vocab"])

    @property
    def duration_unit(self) -> str:
        """``state`` (frames per HMM state) or ``phone`` (frames per phone): what
        ``durations.npy`` counts."""
        unit = self.cfg["duration_unit"]
        if unit == "auto":
            return "state" if self.recipe["labels"]["source"] == "align" else "phone"
        return unit

    @property
    def questions(self) -> CompiledQuestions:
        if self._questions is None:
            self._questions = CompiledQuestions(load_questions(self.cfg["questions"]))
        return self._questions

    def outputs(self) -> list[ArraySpec]:
        if not self.active:
            return []
        names = feature_names(self.questions, self.cfg["subphone_features"])
        questions = tuple(self.questions.questions.names)
        unit = self.duration_unit
        states = range(1, STATES_PER_PHONE + 1)
        counts = tuple(f"state_{s}" for s in states) if unit == "state" else ("phone",)
        specs = [
            ArraySpec("ling", "float32", len(names), columns=tuple(names)),
            # the duration model's stream: one row per phone kept by the trim
            ArraySpec("ling_phone", "float32", len(questions), rate="phone", columns=questions),
            ArraySpec(
                "durations", "float32", len(counts), rate="phone", columns=counts, extra={"unit": unit}
            ),
        ]
        if self.cfg["compact"]:
            vocab = tuple((f, tuple(self.vocab[FIELD_VOCABULARY[f]])) for f in CATEGORICAL)
            specs += [
                ArraySpec("ling_cat", "int32", len(CATEGORICAL), columns=CATEGORICAL, vocabularies=vocab),
                ArraySpec("ling_num", "float32", len(NUMERIC_COLUMNS), columns=NUMERIC_COLUMNS),
            ]
        return specs

    def version(self) -> str:
        return "2:" + (self.questions.questions.source if self.active else "")

    def process(self, item: Item) -> None:
        if not self.active:
            item.fields["label_adjust_frames"] = 0
            return
        label = item.data["label"]
        n_frames = item.n_frames
        shift = item.fields["trim_start"] * UNITS_PER_SAMPLE
        limit = n_frames * FRAME_UNITS
        start = np.clip(label.start - shift, 0, limit)
        end = np.clip(label.end - shift, 0, limit)
        adjust = n_frames - int(end[-1] // FRAME_UNITS)
        end[-1] = limit  # labels a little short of the audio: the last line (silence) grows
        moved = HTSLabel(label.contexts, start, end, label.states)
        try:
            phone_rows = self.questions.evaluate(phone_contexts(moved))
            feats = frame_features(moved, phone_rows, self.cfg["subphone_features"])
        except FeatprepError as e:
            raise Rejected("bad_label", str(e)) from None
        if len(feats) != n_frames:
            raise RuntimeError(f"{item.utterance.id}: {len(feats)} label frames for {n_frames} audio frames")
        durations = self._durations(moved)
        # a phone the trim cut away entirely has no frames to predict; one it cut partly
        # keeps the frames that remain, so the durations add up to n_frames
        kept = durations.sum(axis=1) > 0
        item.arrays["ling"] = feats
        item.arrays["ling_phone"] = phone_rows[kept]
        item.arrays["durations"] = durations[kept]
        if self.cfg["compact"]:
            item.arrays["ling_cat"], item.arrays["ling_num"] = label_compact_features(moved, self.vocab)
        item.fields["label_adjust_frames"] = adjust

    def _durations(self, label: HTSLabel) -> np.ndarray:
        """Frames per state or per phone (`duration_unit`) of labels in trimmed time."""
        durations = duration_targets(label)
        if self.duration_unit == "phone":
            return durations.sum(axis=1, keepdims=True)
        if not label.state_aligned or durations.shape[1] != STATES_PER_PHONE:
            kind = f"{durations.shape[1]} states per phone" if label.state_aligned else "phone-aligned"
            raise Rejected(
                "bad_label",
                f"linguistic.duration_unit = state needs labels of {STATES_PER_PHONE} states per phone; "
                f"these are {kind}",
            )
        return durations
