"""``featprep demo``: a small multi-speaker corpus synthesised with Festival, then prepared.

Six speakers of both genders come from three Festival voices with different F0 means and
duration stretches. Each utterance gets room noise and leading and trailing silence of
varying length, and is written in three real layouts: VCTK 0.80 (48 kHz wav), VCTK 0.92
(48 kHz flac, mic1 and mic2) and CMU Arctic (16 kHz wav, etc/txt.done.data, lab/). A
handful of utterances are broken on purpose, one per rejection code. Festival's phone
boundaries, shifted by the added silence, are kept as ground truth in ``truth/``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from . import __version__
from .errors import FeatprepError
from .festival import run_script, scheme_path, scheme_string, voice_command
from .io import atomic_write_text, check_output_dir
from .labels.frontend import merlin_normalise, utterance_to_labels
from .labels.hts import write_hts
from .labels.xwaves import Segment, format_xwaves, read_xwaves
from .workers import resolve_jobs

logger = logging.getLogger(__name__)

RATE = 48000

SENTENCES = [
    "Please call Stella and ask her to bring these things with her from the store.",
    "The rainbow is a division of white light into many beautiful colours.",
    'She said, "Meet me at the station (platform two) at half past nine."',
    "A quiet morning in the café was all the naïve traveller wanted.",
    "Six thick thistle sticks lay across the narrow garden path.",
    "Why did the orchestra stop playing before the final movement?",
    "The backslash key \\ sits just above the return key on most keyboards.",
    "Every winter, the old lighthouse keeper painted the door a brighter red.",
    "It's not the size of the boat, it's the motion of the ocean.",
    "Seventy-two people waited patiently for the delayed train to Glasgow.",
    "Nobody expected the quiz to include questions about medieval architecture.",
    "Bright sparks flew from the grinder as the blacksmith shaped the blade.",
]
EXTRA = [
    "The committee will announce its decision early next week.",
    "Fresh bread and strong coffee made the kitchen smell wonderful.",
    "Turn left at the church and follow the river to the bridge.",
]
SHORT = "Yes, of course."
LONG = (
    "Once upon a time, in a small village at the edge of a great forest, there lived an old "
    "clockmaker who repaired every clock in the valley. Each morning he opened his shutters, "
    "greeted the baker across the street, and sat down at his bench with a cup of tea. People "
    "brought him pocket watches, grandfather clocks and even the town hall bell, and he never "
    "turned anyone away, no matter how small the job or how little they could pay him for it."
)


@dataclass(frozen=True)
class DemoSpeaker:
    """One synthetic speaker: a Festival voice with its own F0 and tempo."""

    arctic: str
    vctk: str
    gender: str
    voice: str
    #: diphone voices: target F0 mean in Hz; the HTS voice shifts F0 (and formants) by
    #: ``pitch_factor`` through resampling instead
    f0_mean: float
    stretch: float
    pitch_factor: float = 1.0

    def setup_scheme(self) -> str:
        lines = [voice_command(self.voice)]
        if self.voice.endswith("_hts"):
            lines.append(
                f'(set! hts_engine_params (append hts_engine_params (list \'("-r" {1 / self.stretch:.4f}))))'
            )
        else:
            # CMU Arctic's front-end (labels.voice, like every Arctic voice) reduces no vowel;
            # the diphone voices would, and lab/ would then hold phones it never predicts
            lines.append("(set! postlex_vowel_reduce_cart_tree nil)")
            lines.append(
                f"(set! int_lr_params '((target_f0_mean {self.f0_mean}) (target_f0_std 14) "
                "(model_f0_mean 170) (model_f0_std 34)))"
            )
            lines.append(f"(Parameter.set 'Duration_Stretch {self.stretch})")
        return "\n".join(lines)


SPEAKERS = (
    DemoSpeaker("dma", "p901", "M", "kal_diphone", 105.0, 1.0),
    DemoSpeaker("dmb", "p902", "M", "kal_diphone", 135.0, 1.15),
    DemoSpeaker("dmc", "p903", "M", "ked_diphone", 95.0, 0.95),
    DemoSpeaker("dfa", "p904", "F", "cmu_us_slt_arctic_hts", 0.0, 1.0),
    DemoSpeaker("dfb", "p905", "F", "cmu_us_slt_arctic_hts", 0.0, 1.15, 1.12),
    DemoSpeaker("dfc", "p906", "F", "cmu_us_slt_arctic_hts", 0.0, 0.9, 0.9),
)

#: (speaker, number, defect, source) for the broken utterances; ``source`` names the
#: synthesised text whose audio (and, unless the defect is about text, transcript) it uses
DEFECTS = (
    ("dma", 101, "missing_text", "E0"),
    ("dma", 102, "empty_text", "E1"),
    ("dma", 103, "text_encoding", "E2"),
    ("dmb", 101, "missing_audio", "E0"),
    ("dmb", 102, "unreadable_audio", "E1"),
    ("dmb", 103, "truncated_audio", "E2"),
    ("dmc", 101, "empty_audio", "E0"),
    ("dmc", 102, "digital_silence", "E1"),
    ("dmc", 103, "near_silent", "E2"),
    ("dfa", 101, "clipping", "E0"),
    ("dfa", 102, "too_short", "E1"),
    ("dfa", 103, "too_long", "LONG"),
    ("dfb", 101, "speaking_rate", "SHORT"),
    ("dfb", 102, "nan_inf", "E1"),
    ("dfc", 101, "downmixed", "E0"),
    ("dfc", 102, "resampled", "E1"),
    ("dfb", 103, "label_mismatch", "E0"),
    ("dfc", 103, "bad_label", "E2"),
    ("dma", 104, "no_voiced", "E1"),
)


#: the demo speakers' genders, as recipe overrides (CMU Arctic has no speaker table)
DEMO_GENDERS = [f"speakers.gender.{s.arctic}={s.gender}" for s in SPEAKERS]
#: label sources of the demo's prepare runs: the exact labels Festival synthesised from
DEMO_LABELS = {
    "vctk-0.80": ["labels.source=dir", "labels.dir=../truth/full"],
    "vctk-0.92": [
        "labels.source=festival",
        "labels.dir=../truth/utts",
        "labels.pattern={speaker}/{utterance}.utt",
    ],
    "cmu_arctic": ["labels.source=festival", "labels.pattern={tree}/festival/utts/{stem}.utt"],
}
#: no PASE checkpoint can be downloaded here: the demo shows the stream with random weights,
#: asked for explicitly and recorded in the manifest
DEMO_PASE = ["pase.arch=pase", "pase.random_init_seed=0"]


@dataclass
class Synth:
    """One synthesised utterance at 48 kHz with its phone segments (seconds)."""

    text: str
    audio: np.ndarray
    segments: list[Segment]
    utt_file: Path


#: ked_diphone's synthesis cuts every ``er`` in two and names the second half ``r`` (a
#: segment of no syllable) to use its er-r diphone: the half goes back to the ``er``, so
#: the saved segments are the phones of the words, as an aligner would label them
_MERGE_INSERTED = """
(define (featprep_merge_inserted utt)
  (mapcar
    (lambda (s)
      (if (and (not (string-equal (item.name s) "pau")) (not (item.relation s 'SylStructure)))
          (begin
            (item.set_feat (item.prev s) "end" (item.feat s "end"))
            (item.delete s))))
    (utt.relation.items utt 'Segment))
  utt)
"""


def synthesize(speaker: DemoSpeaker, texts: dict[str, str], workdir: Path) -> dict[str, Synth]:
    """Synthesise ``texts`` (key -> text) with one Festival process."""
    script = [_MERGE_INSERTED, speaker.setup_scheme()]
    for key in texts:
        script.append(
            f"(set! utt (featprep_merge_inserted (utt.synth (Utterance Text {scheme_string(texts[key])}))))\n"
            f"(utt.save.wave utt {scheme_path(key + '.wav')} 'riff)\n"
            f"(utt.save.segs utt {scheme_path(key + '.segs')})\n(utt.save utt {scheme_path(key + '.utt')})"
        )
    run_script("\n".join(script) + "\n", workdir)
    out = {}
    for key, text in texts.items():
        audio, sr = sf.read(workdir / f"{key}.wav", dtype="float32")
        audio = soxr.resample(audio, sr * speaker.pitch_factor, RATE, quality="HQ")
        audio *= 0.5 / max(float(np.abs(audio).max()), 1e-6)
        scale = 1.0 / speaker.pitch_factor
        segments = [(s * scale, e * scale, p) for s, e, p in read_xwaves(workdir / f"{key}.segs")]
        out[key] = Synth(text, audio.astype(np.float32), segments, workdir / f"{key}.utt")
    return out


def room(n: int, rng: np.random.Generator, level_dbfs: float = -60.0) -> np.ndarray:
    """Room noise: low-passed (brown-ish) noise plus a faint 50 Hz hum."""
    white = rng.standard_normal(n + 4800)
    brown = np.convolve(white, np.full(48, 1 / 48), mode="same")[4800:]
    brown *= 10 ** (level_dbfs / 20) / max(float(brown.std()), 1e-12)
    hum = 10 ** ((level_dbfs - 6) / 20) * np.sin(2 * np.pi * 50 * np.arange(n) / RATE + rng.uniform(0, 6.3))
    return (brown + hum).astype(np.float32)


def place(speech: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Put speech in a room: random leading and trailing silence, noise throughout."""
    lead, trail = rng.uniform(0.25, 1.2), rng.uniform(0.25, 1.2)
    a, b = round(lead * RATE), round(trail * RATE)
    audio = np.concatenate([np.zeros(a, np.float32), speech, np.zeros(b, np.float32)])
    return audio + room(len(audio), rng), a / RATE, b / RATE


class _Writer:
    """Writes one utterance into the three layouts and the truth table."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v80 = root / "VCTK-Corpus"
        self.v92 = root / "VCTK-Corpus-0.92"
        self.arctic = root / "cmu_arctic"
        self.truth_rows: list[dict[str, object]] = []
        #: Festival utterances to put in corpus time: (source, time scale, lead, targets)
        self.retime: list[tuple[Path, float, float, list[Path]]] = []
        #: utterances whose label files are damaged once written
        self.broken_labels: list[tuple[DemoSpeaker, int]] = []
        self.prompts: dict[str, list[bytes]] = {}

    def audio(self, spk: DemoSpeaker, number: int, audio: np.ndarray, *, mic2: bool = True) -> None:
        vid, aid = f"{spk.vctk}_{number:03d}", f"arctic_b{number:04d}"
        self._save(self.v80 / "wav48" / spk.vctk / f"{vid}.wav", audio, RATE, "PCM_16")
        d92 = self.v92 / "wav48_silence_trimmed" / spk.vctk
        self._save(d92 / f"{vid}_mic1.flac", audio, RATE, "PCM_16")
        if mic2:
            # the other microphone: brighter, with its own noise
            bright = np.concatenate([audio[:1], audio[1:] - 0.6 * audio[:-1]])
            self._save(d92 / f"{vid}_mic2.flac", bright, RATE, "PCM_16")
        arctic16 = soxr.resample(audio, RATE, 16000, quality="HQ") if len(audio) else audio
        self._save(self._tree(spk) / "wav" / f"{aid}.wav", arctic16, 16000, "PCM_16")

    def text(self, spk: DemoSpeaker, number: int, raw: bytes) -> None:
        vid = f"{spk.vctk}_{number:03d}"
        path = self.v80 / "txt" / spk.vctk / f"{vid}.txt"
        for p in (path, self.v92 / "txt" / spk.vctk / f"{vid}.txt"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(raw + b"\n")
        quoted = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        self.prompts.setdefault(spk.arctic, []).append(b'( arctic_b%04d "' % number + quoted + b'" )')

    def truth(
        self, spk: DemoSpeaker, number: int, synth: Synth, lead: float, trail: float, expected: str
    ) -> None:
        vid = f"{spk.vctk}_{number:03d}"
        segments = [(s + lead, e + lead, p) for s, e, p in synth.segments]
        label = format_xwaves(segments)
        for d in (self.root / "truth" / "labels" / spk.vctk, self._tree(spk) / "lab"):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "truth" / "labels" / spk.vctk / f"{vid}.lab").write_text(label)
        (self._tree(spk) / "lab" / f"arctic_b{number:04d}.lab").write_text(label)
        outs = [
            self.root / "truth" / "utts" / spk.vctk / f"{vid}.utt",
            self._tree(spk) / "festival" / "utts" / f"arctic_b{number:04d}.utt",
        ]
        self.retime.append((synth.utt_file, 1.0 / spk.pitch_factor, lead, outs))
        self.record(spk, number, synth, lead, trail, expected)

    def record(
        self, spk: DemoSpeaker, number: int, synth: Synth, lead: float, trail: float, expected: str
    ) -> None:
        """A row of ``truth/utterances.tsv``."""
        vid = f"{spk.vctk}_{number:03d}"
        self.truth_rows.append(
            {
                "utterance": vid,
                "arctic": f"{spk.arctic}_arctic_b{number:04d}",
                "vctk_speaker": spk.vctk,
                "arctic_speaker": spk.arctic,
                "gender": spk.gender,
                "voice": spk.voice,
                "f0_mean": spk.f0_mean,
                "stretch": spk.stretch,
                "pitch_factor": spk.pitch_factor,
                "lead_seconds": round(lead, 6),
                "trail_seconds": round(trail, 6),
                "expected": expected,
                "text": synth.text,
            }
        )

    def _tree(self, spk: DemoSpeaker) -> Path:
        return self.arctic / f"cmu_us_{spk.arctic}_arctic"

    @staticmethod
    def _save(path: Path, audio: np.ndarray, rate: int, subtype: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, rate, subtype=subtype)

    def _write_utterances(self) -> None:
        """Festival utterances and full-context labels in the corpus audio's time."""
        script = [
            "(define (featprep_retime in scale lead outs)",
            "  (let ((utt (utt.load nil in)))",
            '    (mapcar (lambda (s) (item.set_feat s "end" (+ lead (* scale (item.feat s "end")))))',
            "            (utt.relation.items utt 'Segment))",
            "    (mapcar (lambda (o) (utt.save utt o)) outs)))",
        ]
        for src, scale, lead, outs in self.retime:
            for o in outs:
                o.parent.mkdir(parents=True, exist_ok=True)
            targets = " ".join(scheme_path(o) for o in outs)
            script.append(f"(featprep_retime {scheme_path(src)} {scale:.9f} {lead:.9f} (list {targets}))")
        run_script("\n".join(script) + "\n", self.root / "festival" / "retime")
        truth_utts = [outs[0] for _, _, _, outs in self.retime]
        for utt, label in zip(truth_utts, utterance_to_labels(truth_utts), strict=True):
            full = self.root / "truth" / "full" / utt.parent.name / f"{utt.stem}.lab"
            full.parent.mkdir(parents=True, exist_ok=True)
            write_hts(full, merlin_normalise(label))

    def finish(self) -> None:
        self._write_utterances()
        for spk, number in self.broken_labels:
            vid = f"{spk.vctk}_{number:03d}"
            for path in (
                self.root / "truth" / "full" / spk.vctk / f"{vid}.lab",
                self.root / "truth" / "utts" / spk.vctk / f"{vid}.utt",
                self._tree(spk) / "festival" / "utts" / f"arctic_b{number:04d}.utt",
            ):
                path.write_text("0 50000 half a label, not HTS\n(\n")
        for arctic, lines in self.prompts.items():
            etc = self.arctic / f"cmu_us_{arctic}_arctic" / "etc"
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "txt.done.data").write_bytes(b"\n".join(sorted(lines)) + b"\n")
        header80 = "ID  AGE  GENDER  ACCENTS  REGION\n"
        header92 = "ID  AGE  GENDER  ACCENTS  REGION  COMMENTS\n"
        rows80 = [
            f"{s.vctk[1:]}  {23 + i}  {s.gender}    American  Festival {s.voice}\n"
            for i, s in enumerate(SPEAKERS)
        ]
        rows92 = [
            f"{s.vctk}  {23 + i}  {s.gender}    American  Festival {s.voice}\n"
            for i, s in enumerate(SPEAKERS)
        ]
        (self.v80 / "speaker-info.txt").write_text(
            header80 + "".join(rows80) + "315  22  M    American  Festival\n"
        )
        (self.v92 / "speaker-info.txt").write_text(header92 + "".join(rows92))
        with open(self.root / "truth" / "utterances.tsv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.truth_rows[0]), delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(sorted(self.truth_rows, key=lambda r: r["utterance"]))


def build_corpus(
    out: Path, *, per_speaker: int = 8, seed: int = 0, log: Callable[[str], None] | None = None
) -> Path:
    """Synthesise the demo corpus into ``out`` (skipped when already built the same way).

    Returns ``out``, holding ``VCTK-Corpus/``, ``VCTK-Corpus-0.92/``, ``cmu_arctic/`` and
    ``truth/`` (``utterances.tsv``: speaker, voice settings, added silence and the
    expected outcome of every utterance; in the corpus audio's time: ``labels/``,
    Festival's phone boundaries (xwaves), ``utts/``, Festival's utterances, and ``full/``,
    full-context labels, Merlin-normalised). The CMU Arctic layout carries the same
    utterances in ``festival/utts/`` and boundaries in ``lab/``. Messages go to ``log``
    (default: this module's logger).
    """
    log = log or logger.info
    out = Path(out).resolve()  # Festival scripts name files by absolute path
    check_output_dir(out.parent, "demo folder")  # the corpus is built beside out, then renamed
    stamp = json.dumps(
        {
            "version": __version__,
            "per_speaker": per_speaker,
            "seed": seed,
            "texts": hashlib.sha256("".join(SENTENCES + EXTRA + [SHORT, LONG]).encode()).hexdigest(),
        }
    )
    done = out / ".complete"
    if done.is_file() and done.read_text() == stamp:
        log(f"demo corpus {out} already built")
        return out
    if per_speaker < 1:
        raise FeatprepError(f"the demo needs at least 1 utterance per speaker, found {per_speaker}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = _Writer(tmp)
    rng = np.random.default_rng(seed)
    defects = {(s, n): (d, src) for s, n, d, src in DEFECTS}
    for k, spk in enumerate(SPEAKERS):
        texts = {f"S{i}": SENTENCES[(k * 2 + i) % len(SENTENCES)] for i in range(per_speaker)}
        texts.update({f"E{i}": t for i, t in enumerate(EXTRA)}, SHORT=SHORT)
        if any(s == spk.arctic and src == "LONG" for (s, _), (_, src) in defects.items()):
            texts["LONG"] = LONG
        log(f"synthesising {len(texts)} utterances of {spk.vctk}/{spk.arctic} ({spk.voice})")
        synths = synthesize(spk, texts, tmp / "festival" / spk.arctic)
        for i in range(per_speaker):
            synth = synths[f"S{i}"]
            audio, lead, trail = place(synth.audio, rng)
            writer.audio(spk, i + 1, audio)
            writer.text(spk, i + 1, synth.text.encode())
            writer.truth(spk, i + 1, synth, lead, trail, "ok")
        for (s, number), (defect, src) in sorted(defects.items()):
            if s == spk.arctic:
                _write_defect(writer, spk, number, defect, synths, src, rng)
    # p315 of VCTK 0.80: audio without transcripts, excluded by the recipe
    p315 = place(synths["E0"].audio, rng)[0]
    sf.write(
        _mkdirs(tmp / "VCTK-Corpus" / "wav48" / "p315" / "p315_001.wav"),
        p315,
        RATE,
        subtype="PCM_16",
    )
    writer.finish()
    # the same speaker unpacked twice (a release folder beside the plain one)
    first = SPEAKERS[0]
    tree = tmp / "cmu_arctic" / f"cmu_us_{first.arctic}_arctic"
    dup = tmp / "cmu_arctic" / f"cmu_us_{first.arctic}_arctic-0.95-release"
    for part in ("wav/arctic_b0001.wav", "lab/arctic_b0001.lab", "festival/utts/arctic_b0001.utt"):
        shutil.copyfile(tree / part, _mkdirs(dup / part))
    (_mkdirs(dup / "etc" / "txt.done.data")).write_text(f'( arctic_b0001 "{SENTENCES[0]}" )\n')
    shutil.rmtree(tmp / "festival")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    atomic_write_text(done, stamp)
    return out


def _mkdirs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_defect(
    w: _Writer,
    spk: DemoSpeaker,
    number: int,
    defect: str,
    synths: dict[str, Synth],
    src: str,
    rng: np.random.Generator,
) -> None:
    """Write one deliberately broken (or unusual but valid) utterance."""
    synth = synths[src]
    audio, lead, trail = place(synth.audio, rng)
    text = synth.text.encode()
    vid = f"{spk.vctk}_{number:03d}"
    if defect == "missing_text":
        w.audio(spk, number, audio)
    elif defect == "missing_audio":
        w.text(spk, number, text)
    elif defect in ("empty_text", "text_encoding"):
        w.audio(spk, number, audio)
        w.text(
            spk,
            number,
            b"   " if defect == "empty_text" else synth.text.encode("latin-1", "replace") + b" caf\xe9",
        )
    elif defect == "too_short":
        chunk = synth.audio[len(synth.audio) // 2 :][: round(0.12 * RATE)]
        audio, lead, trail = place(chunk, rng)
        w.audio(spk, number, audio)
        w.text(spk, number, b"Hello there.")
    elif defect == "speaking_rate":
        w.audio(spk, number, audio)
        w.text(spk, number, LONG.encode())
    elif defect in ("label_mismatch", "bad_label"):
        w.audio(spk, number, audio)
        w.text(spk, number, text)
        if defect == "label_mismatch":
            synth = synths["SHORT"]  # the labels of another, shorter utterance
        else:
            w.broken_labels.append((spk, number))
    else:
        if defect == "digital_silence":
            audio = np.zeros_like(audio)
        elif defect == "near_silent":
            audio = room(len(audio), rng, level_dbfs=-75.0)
        elif defect == "clipping":
            audio = np.clip(audio * 8.0, -1.0, 1.0)
        elif defect == "empty_audio":
            audio = audio[:0]
        elif defect == "no_voiced":
            # whispered: noise shaped by the speech's envelope, no periodicity left
            envelope = np.sqrt(np.convolve(audio**2, np.full(480, 1 / 480), mode="same"))
            audio = (rng.standard_normal(len(audio)) * envelope).astype(np.float32)
            audio *= 0.5 / float(np.abs(audio).max())
        elif defect == "downmixed":
            audio = np.stack([audio, 0.8 * audio], axis=1)
        w.audio(spk, number, audio)
        w.text(spk, number, text)
        _corrupt(w, spk, number, vid, defect, audio)
    if defect in ("missing_audio", "empty_audio", "too_short"):
        w.record(spk, number, synth, lead, trail, defect)  # no labels: they could not fit
    else:
        w.truth(spk, number, synth, lead, trail, defect)


def _corrupt(w: _Writer, spk: DemoSpeaker, number: int, vid: str, defect: str, audio: np.ndarray) -> None:
    """Damage the files written for an utterance in place, in every layout."""
    files = [
        w.v80 / "wav48" / spk.vctk / f"{vid}.wav",
        w.v92 / "wav48_silence_trimmed" / spk.vctk / f"{vid}_mic1.flac",
        w.v92 / "wav48_silence_trimmed" / spk.vctk / f"{vid}_mic2.flac",
        w.arctic / f"cmu_us_{spk.arctic}_arctic" / "wav" / f"arctic_b{number:04d}.wav",
    ]
    if defect == "unreadable_audio":
        for f in files:
            f.write_bytes(b"RIFF\x00\x00\x00\x00garbage, not audio" * 8)
    elif defect == "truncated_audio":
        for f in files:
            data = f.read_bytes()
            f.write_bytes(data[: len(data) // 2])
    elif defect == "nan_inf":
        bad = audio.copy()
        bad[len(bad) // 3 :: 997] = np.nan
        sf.write(files[0], bad, RATE, subtype="FLOAT")
        bad16 = soxr.resample(audio, RATE, 16000)
        bad16[len(bad16) // 3 :: 331] = np.inf
        sf.write(files[3], bad16, 16000, subtype="FLOAT")
    elif defect == "resampled":
        sf.write(files[3], soxr.resample(audio, RATE, 22050), 22050, subtype="PCM_16")


def run_demo(
    out: Path,
    *,
    per_speaker: int = 8,
    jobs: int = 1,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Build the demo corpus under ``out/corpus`` and prepare its three layouts.

    Returns the summary lines of each prepare run, then the commands that go on from the
    CMU Arctic layout (normstats, train, generate, evaluate) with the demo's paths.
    Messages go to ``log`` (default: this module's logger).
    """
    from .manifest import read_manifest
    from .pipeline import prepare

    log = log or logger.info

    resolve_jobs(jobs)  # before minutes of synthesis, not after
    corpus = build_corpus(out / "corpus", per_speaker=per_speaker, seed=seed, log=log)
    arctic_sets = DEMO_GENDERS + DEMO_LABELS["cmu_arctic"] + DEMO_PASE
    runs = [
        ("vctk", corpus / "VCTK-Corpus", "vctk-0.80", DEMO_LABELS["vctk-0.80"]),
        ("vctk", corpus / "VCTK-Corpus-0.92", "vctk-0.92", DEMO_LABELS["vctk-0.92"]),
        ("cmu_arctic", corpus / "cmu_arctic", "cmu_arctic", arctic_sets),
    ]
    lines = [f"demo corpus: {corpus} (ground truth in {corpus / 'truth'})"]
    for name, root, target, sets in runs:
        log(f"featprep prepare {name} --root {root} --out {out / 'manifests' / target}")
        report = prepare(name, root, out / "manifests" / target, overrides=sets, jobs=jobs, log=log)
        lines += ["", f"== {target}"] + report.lines()
        manifest = read_manifest(out / "manifests" / target)
        streams = ", ".join(f"{f['name']} ({f['dim']} x {f['dtype']})" for f in manifest["features"])
        lines.append(f"streams: audio (int16, 16 kHz), {streams}")
    return lines + _next_commands(out)


def _next_commands(out: Path) -> list[str]:
    """What to run next on the demo's CMU Arctic layout, ready to paste."""
    from .manifest import read_manifest

    data, run = out / "manifests" / "cmu_arctic", out / "runs" / "cmu_arctic"
    durations = out / "runs" / "cmu_arctic-durations"
    speaker = next(s["id"] for s in read_manifest(data)["speakers"] if s["role"] == "modeling")
    # the featprep beside this Python (.venv/bin/featprep after make demo), unless that is
    # the one on PATH anyway
    beside = Path(sys.executable).parent / "featprep"
    command = "featprep"
    if beside.is_file() and shutil.which("featprep") != str(beside):
        command = str(beside.relative_to(Path.cwd()) if beside.is_relative_to(Path.cwd()) else beside)
    commands = [
        ["normstats", data],
        ["train", data, "--out", run, "--preset", "small", "--steps", 100],
        ["generate", run, "--text", "Please call Stella.", "--speaker", speaker, "--out", out / "stella.wav"],
        ["evaluate", run, "--max-utterances", 2, "--max-seconds", 0.5],
        # the speaker's own timing instead of Festival's: a duration model beside the voice
        ["train", data, "--model", "duration", "--out", durations, "--steps", 200],
        ["generate", run, "--duration-model", durations, "--text", "Please call Stella.",
         "--speaker", speaker, "--out", out / "stella-timed.wav"],
    ]  # fmt: skip
    return [
        "",
        f"== next: train on {data} (labels, acoustic features, PASE)",
        f"Its PASE embeddings come from random weights ({', '.join(DEMO_PASE)}): they test the",
        "plumbing and carry no speaker information; a real run names pase.checkpoint.",
    ] + [shlex.join([command, *map(str, c)]) for c in commands]
