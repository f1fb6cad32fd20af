"""Festival front-end: text or Festival utterances -> HTS full-context labels.

Festival's own features are dumped for every segment through ``(require 'hts)``, whose
helper features (distances to stressed / accented syllables and content words, phrase
and utterance counts) the HTS layout needs; a missing helper would make Festival print a
SIOD error, which `run_script` turns into a failure instead of silent zeros. Festival's
writer is then corrected to the HTS ``label-full.awk`` output that Merlin's question
sets expect: e5 counts content words before the current one plus one, and times come
from the segment end times themselves (no float-to-integer drift).

`merlin_normalise` then does what Merlin's recipe does to such labels: the second of
two consecutive silences is merged into the first, and the silences at the utterance
edges are called ``sil`` (in every context that names them) while pauses inside stay
``pau``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, FeatprepError, Rejected
from ..festival import FestivalTimeout, run_script, scheme_path, scheme_string, voice_command
from ..io import check_output_dir, check_output_file
from ..records import Utterance
from .context import set_phones
from .hts import HTSLabel, phone_of, write_hts

DEFAULT_VOICE = "cmu_us_slt_arctic_hts"
_E5 = re.compile(r"(/E:[^/]*?&)(\d+)(\+)")

_DUMP = """
(require 'hts)
(define (featprep_dump utt path)
  (let ((fd (fopen path "w")))
    (mapcar
      (lambda (s)
        (format fd "%f %s %s"
          (item.feat s "end")
          (item.feat s "R:SylStructure.parent.parent.name")
          (hts_feats_output_string s)))
      (utt.relation.items utt 'Segment))
    (fclose fd)))
"""

# Festival's text analysis up to predicted durations, without waveform synthesis
_ANALYSE = (
    "(Initialize utt) (Text utt) (Token_POS utt) (Token utt) (POS utt) (Phrasify utt) (Word utt) "
    "(Pauses utt) (Intonation utt) (PostLex utt) (Duration utt) (Int_Targets utt)"
)


def _parse_dump(path: Path, source: str) -> HTSLabel:
    starts, ends, contexts, words = [], [], [], []
    previous = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) != 5:
            raise FeatprepError(f"unexpected Festival feature dump line in {path}: {line[:80]!r}")
        end = round(float(fields[0]) * 1e7)
        context = _E5.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}", fields[4])
        starts.append(previous)
        ends.append(end)
        contexts.append(context)
        # a silence belongs to no word: Festival answers 0 (numbers are spelled out as words)
        words.append("" if fields[1] == "0" else fields[1])
        previous = end
    if not contexts:
        # named by its source, not the temporary path (see run_script)
        raise FeatprepError(f"Festival produced no segments for {source}: expected words it can speak")
    return HTSLabel(contexts, np.array(starts, np.int64), np.array(ends, np.int64), words=words)


def _run(
    commands: list[str], sources: list[str], voice: str | None, workdir: Path | None, timeout: float
) -> list[HTSLabel]:
    with tempfile.TemporaryDirectory(prefix="featprep-festival-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        script = [_DUMP]
        if voice:
            script.append(voice_command(voice))
        for i, command in enumerate(commands):
            script.append(f'{command}\n(featprep_dump utt "{i}.feats")')
        run_script("\n".join(script) + "\n", work, timeout=timeout)
        return [_parse_dump(work / f"{i}.feats", source) for i, source in enumerate(sources)]


def text_to_labels(
    texts: Iterable[str],
    *,
    voice: str = DEFAULT_VOICE,
    workdir: Path | None = None,
    timeout: float = 600.0,
) -> list[HTSLabel]:
    """Full-context labels of each text, timed by Festival's predicted durations.

    The times are Festival's duration model's, not an alignment to any recording; drop
    them (``HTSLabel(label.contexts)``) for unaligned labels. ``voice`` must be an
    installed Festival voice; one Festival run of more than ``timeout`` seconds raises
    `FestivalTimeout`.
    """
    texts = list(texts)
    quoted = [scheme_string(t) for t in texts]
    for number, (text, literal) in enumerate(zip(texts, quoted, strict=True), 1):
        if literal == '""':  # blank, or nothing left once folded to ASCII
            raise ArgumentError(f"text {number} ({text!r}) has nothing Festival can read (ASCII letters)")
    commands = [f"(set! utt (Utterance Text {literal}))\n{_ANALYSE}" for literal in quoted]
    sources = [f"text {number} ({text!r})" for number, text in enumerate(texts, 1)]
    return _run(commands, sources, voice, workdir, timeout)


def utterance_to_labels(
    utt_files: Iterable[str | Path], *, workdir: Path | None = None, timeout: float = 600.0
) -> list[HTSLabel]:
    """Full-context labels of saved Festival utterances (``.utt``), with their own timing.

    This is how labels of synthesised speech (the demo corpus) or of corpora shipped
    with Festival utterances (CMU Arctic's ``festival/utts``) keep their exact times.
    """
    commands, sources = [], []
    for f in utt_files:
        path = Path(f).resolve()
        if not path.is_file():
            raise FeatprepError(f"Festival utterance {path} does not exist")
        commands.append(f"(set! utt (utt.load nil {scheme_path(path)}))")
        sources.append(f"Festival utterance {path}")
    return _run(commands, sources, None, workdir, timeout)


def write_labels(
    out: str | Path,
    *,
    texts: Sequence[str] = (),
    utts: Sequence[str | Path] = (),
    voice: str = DEFAULT_VOICE,
    times: bool = False,
    merlin: bool = True,
) -> list[tuple[Path, HTSLabel]]:
    """Full-context labels of ``texts`` or of saved Festival utterances ``utts``, written
    as HTS label files (``featprep frontend``): ``out`` itself for one input, else the
    folder ``out`` of ``NNNN.lab`` (texts) or ``<utt stem>.lab``. Returns each file written
    with its labels.

    Texts keep Festival's predicted durations only with ``times`` (not an alignment to
    any recording); ``merlin`` applies `merlin_normalise`. The output location is checked
    before Festival runs.
    """
    texts, utts, out = list(texts), [Path(u) for u in utts], Path(out)
    if bool(texts) == bool(utts):
        raise ArgumentError("give texts or Festival utterance files (--text, --utt), one or more of either")
    several = len(texts) + len(utts) > 1
    if several:
        check_output_dir(out)
    else:
        check_output_file(out)
    labels = text_to_labels(texts, voice=voice) if texts else utterance_to_labels(utts)
    if texts and not times:
        labels = [HTSLabel(label.contexts) for label in labels]
    if merlin:
        labels = [merlin_normalise(label) for label in labels]
    names = [f"{i:04d}.lab" for i in range(len(texts))] if texts else [f"{u.stem}.lab" for u in utts]
    targets = [out / name for name in names] if several else [out]
    if several:
        out.mkdir(parents=True, exist_ok=True)
    for target, label in zip(targets, labels, strict=True):
        write_hts(target, label)
    return list(zip(targets, labels, strict=True))


def merlin_normalise(label: HTSLabel, *, silence: str = "pau", edge: str = "sil") -> HTSLabel:
    """Merge consecutive silences and rename the edge silences ``edge`` (Merlin's way).

    State-aligned labels stay state-aligned: phones are merged with all their states; a
    merged silence keeps the first silence's states, its last state running on to where
    the last silence of the run ended.
    """
    n = int(label.states.max() - label.states.min() + 1) if label.state_aligned else 1
    phones = [phone_of(c) for c in label.contexts[::n]]
    keep = [i for i in range(len(phones)) if not (i and phones[i] == silence and phones[i - 1] == silence)]
    names = [phones[i] for i in keep]
    if names and names[0] == silence:
        names[0] = edge
    if len(names) > 1 and names[-1] == silence:
        names[-1] = edge
    padded = ["x", "x", *names, "x", "x"]
    lines = [i * n + s for i in keep for s in range(n)]
    contexts = [
        set_phones(label.contexts[line], tuple(padded[k // n : k // n + 5])) for k, line in enumerate(lines)
    ]
    words = [label.words[line] for line in lines] if label.words is not None else None
    if not label.aligned:
        return HTSLabel(contexts, words=words)
    starts, ends = label.start[lines].astype(np.int64), label.end[lines].astype(np.int64)
    # a merged silence ends where the last silence of its run ended
    ends[n - 1 :: n] = [label.end[b * n - 1] for b in [*keep[1:], len(phones)]]
    return HTSLabel(
        contexts, starts, ends, None if label.states is None else label.states[lines], words=words
    )


def festival_batch(
    jobs: list, run: Callable[[list, float], list[HTSLabel]], per_utterance: float
) -> dict[str, HTSLabel | Rejected]:
    """One Festival run for a list of ``(utterance, input)``; on failure, one per utterance
    to find it.

    ``run(inputs, timeout)`` labels a list of inputs; each run gets ``per_utterance``
    seconds per input, and an utterance whose own run fails or times out is rejected
    (``bad_label`` / ``festival_timeout``). Returns utterance id -> labels or rejection.
    """
    out: dict[str, HTSLabel | Rejected] = {}
    if not jobs:
        return out
    try:
        labels = run([j for _, j in jobs], per_utterance * len(jobs))
        for (utt, _), label in zip(jobs, labels, strict=True):
            out[utt.id] = label
    except FeatprepError:
        for utt, job in jobs:
            try:
                out[utt.id] = run([job], per_utterance)[0]
            except FestivalTimeout as e:
                out[utt.id] = Rejected("festival_timeout", str(e))
            except FeatprepError as e:
                out[utt.id] = Rejected("bad_label", str(e))
    return out


def frontend_labels(utterances: list[Utterance], cfg: dict) -> dict[str, HTSLabel | Rejected]:
    """The full contexts Festival's front-end (``labels.voice``) makes from each
    utterance's transcript, timed by its predicted durations, or the rejection.

    A transcript longer than ``labels.max_text_chars`` is rejected (``text_too_long``)
    before Festival sees it: its text analysis grows faster than the text.
    """
    limit, voice = cfg["max_text_chars"], cfg["voice"]
    out: dict[str, HTSLabel | Rejected] = {}
    jobs = []
    for utt in utterances:
        if len(utt.text) > limit:
            out[utt.id] = Rejected(
                "text_too_long", f"{len(utt.text)} characters (labels.max_text_chars = {limit})"
            )
        else:
            jobs.append((utt, utt.text))
    out.update(
        festival_batch(
            jobs,
            lambda texts, timeout: text_to_labels(texts, voice=voice, timeout=timeout),
            cfg["festival_timeout"],
        )
    )
    return out
