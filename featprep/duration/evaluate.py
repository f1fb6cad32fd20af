"""``evaluate`` of a duration run: RMSE and correlation of frames per phone, beside Festival's.

The model times each utterance of the split from its stored phone rows; Festival's
front-end predicts the same utterance's phones from its transcript (the corpus recipe's
``labels.voice``), as ``generate --text`` without a duration model would time them. Both
are compared with the frames of the corpus's labels, summed per phone. The phones are
matched by identity, read from the question set's answers on both sides (the questions
that ask for one current phone): an utterance whose phone sequence from Festival differs
from the labels' is counted and named, never lined up by position, and left out of the
side-by-side figures. The edge silences are left out of every figure: their length is
the silence trim's margin, not the speaker's.
"""

from __future__ import annotations

import json
import re
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArgumentError, FeatprepError
from ..io import atomic_write_text, check_output_dir
from ..labels.frontend import merlin_normalise, text_to_labels
from ..labels.linguistic import phone_contexts
from ..manifest import read_manifest
from ..progress import progress_bar
from ..splits import SPLITS, TRAINED_ROLES
from .data import PhoneCorpus
from .run import DurationRun

#: a question that asks for one current phone (p3): ``*-aa+*``
_IDENTITY = re.compile(r"^\*-([^*?+\-]+)\+\*$")
_SILENCES = ("sil", "pau")


def phone_names(questions: Any, rows: np.ndarray) -> list[str]:
    """Each phone row's current phone, from the question set's identity questions ("?"
    where none or several answer yes)."""
    identity = [
        (column, _IDENTITY.match(q.patterns[0]).group(1))
        for column, q in enumerate(questions.questions.binary)
        if len(q.patterns) == 1 and _IDENTITY.match(q.patterns[0])
    ]
    if not identity:
        raise FeatprepError(
            "the question set asks for no single current phone (*-PHONE+*): phones cannot be matched"
        )
    columns = [c for c, _ in identity]
    names = [name for _, name in identity]
    answers = rows[:, columns] > 0.5
    return [names[int(np.argmax(a))] if a.sum() == 1 else "?" for a in answers]


def figures(predicted: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float | int | None]:
    """RMSE (frames per phone) and Pearson correlation over the pooled phones; a
    correlation of constant values is undefined (None)."""
    p = np.concatenate(predicted).astype(np.float64)
    r = np.concatenate(reference).astype(np.float64)
    defined = len(p) > 1 and p.std() > 0 and r.std() > 0
    return {
        "phones": len(p),
        "rmse_frames": float(np.sqrt(np.mean((p - r) ** 2))),
        "correlation": float(np.corrcoef(p, r)[0, 1]) if defined else None,
    }


def _first_difference(labels: list[str], festival: list[str]) -> dict[str, Any]:
    """Where two phone sequences first differ: the phone's place and each side's phone
    (None past a sequence's end), and both lengths."""
    at = next(i for i, (a, b) in enumerate(zip_longest(labels, festival)) if a != b)
    return {
        "phone": at,
        "labels_phone": labels[at] if at < len(labels) else None,
        "festival_phone": festival[at] if at < len(festival) else None,
        "labels_phones": len(labels),
        "festival_phones": len(festival),
    }


def _train_texts(directory: Path) -> set[str]:
    """The transcripts of the corpus's train split (utterances.parquet)."""
    import pyarrow.parquet as pq

    from ..manifest import UTTERANCES

    table = pq.read_table(directory / UTTERANCES, columns=["split", "text"]).to_pydict()
    return {t for split, t in zip(table["split"], table["text"], strict=True) if split == "train"}


def _inner(names: list[str]) -> slice:
    """The phones between the edge silences."""
    return slice(1 if names[0] in _SILENCES else 0, len(names) - (names[-1] in _SILENCES))


def evaluate_duration(
    run_folder: str | Path,
    *,
    split: str = "test",
    voice: str | None = None,
    verify: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Duration RMSE and correlation of a duration run on ``split``, per speaker and
    pooled, next to the predictions of Festival's front-end with ``voice`` (default: the
    corpus recipe's ``labels.voice``) on the same utterances; also written to
    ``RUN/eval_<split>.json`` (strict JSON, an undefined figure null). `result_lines`
    gives the table."""
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {list(SPLITS)}, found {split!r}")
    check_output_dir(run_folder, "run folder")
    run = DurationRun(run_folder)
    try:
        corpus = PhoneCorpus(run.info["corpus"], (split,), verify=verify, roles=TRAINED_ROLES)
    except FeatprepError as e:
        raise FeatprepError(f"cannot evaluate on {split!r}: {e}") from None
    questions = run.questions
    if corpus.questions != run.info["questions"]:
        raise FeatprepError(f"{corpus.directory} answers other questions than the run was trained on")
    voice = voice or read_manifest(corpus.directory)["recipe"]["labels"]["voice"]
    utterances = corpus.utterances
    festival = [
        merlin_normalise(label) for label in text_to_labels([u.text for u in utterances], voice=voice)
    ]
    trained_on = _train_texts(corpus.directory)
    model_frames, festival_frames, true_frames, speakers, rows, mismatched = [], [], [], [], [], []
    with progress_bar(len(utterances), "utt", enabled=progress, desc="evaluate") as bar:
        for u, label in zip(utterances, festival, strict=True):
            speaker = corpus.speakers[u.speaker]
            stored = corpus.rows(u)
            names = phone_names(questions, stored)
            inner = _inner(names)
            truth = corpus.durations(u).sum(axis=1)[inner]
            predicted = run.frames(stored, run.speaker_input(speaker)).sum(axis=1)[inner]
            festival_names = phone_names(questions, questions.evaluate(phone_contexts(label)))
            same = festival_names == names
            festival_frames.append(label.frames()[_inner(festival_names)] if same else None)
            if not same:
                mismatched.append({"utterance": u.utterance, **_first_difference(names, festival_names)})
            model_frames.append(predicted)
            true_frames.append(truth)
            speakers.append(speaker)
            rows.append(
                {
                    **{"utterance": u.utterance, "speaker": speaker, "phones": len(truth), "festival": same},
                    "text_in_train": u.text in trained_on,  # spoken by some speaker of the train split
                }
            )
            bar.update(1)
    same = [r["festival"] for r in rows]

    def compare(keep: list[bool]) -> dict[str, Any]:
        """The model's and Festival's figures over the utterances ``keep`` marks (Festival
        predicts the phones of each)."""
        chosen = [i for i, k in enumerate(keep) if k]
        if not chosen:
            return {"model": None, "festival": None}
        truth = [true_frames[i] for i in chosen]
        return {
            "model": figures([model_frames[i] for i in chosen], truth),
            "festival": figures([festival_frames[i] for i in chosen], truth),
        }

    result = {
        "kind": "duration",
        "split": split,
        "unit": run.unit,
        "voice": voice,
        "utterances": len(rows),
        "mismatched": mismatched,
        # every utterance, the model alone
        "model_all": figures(model_frames, true_frames),
        # utterances whose phones Festival predicts as the labels have them: side by side
        "pooled": compare(same),
        # the same over utterances whose text no train utterance has
        "unseen_text": compare([s and not r["text_in_train"] for s, r in zip(same, rows, strict=True)]),
        "speakers": {
            s: compare([same[i] and speakers[i] == s for i in range(len(rows))])
            for s in sorted(set(speakers))
        },
        "per_utterance": rows,
    }
    text = json.dumps(result, indent=1, allow_nan=False)
    atomic_write_text(Path(run_folder) / f"eval_{split}.json", text + "\n")
    return result


def result_lines(result: dict[str, Any]) -> list[str]:
    """The table of a duration evaluation: one line per speaker, then the pooled figures
    (and those of utterances whose text the train split does not have)."""

    def cell(f: dict[str, Any] | None) -> str:
        if f is None:
            return f"{'-':>8} {'-':>6}"
        corr = "-" if f["correlation"] is None else f"{f['correlation']:.3f}"
        return f"{f['rmse_frames']:8.2f} {corr:>6}"

    lines = [
        f"{'speaker':<12} {'phones':>7} {'model RMSE':>10} {'corr':>6} {'Festival RMSE':>13} {'corr':>6}"
    ]
    rows = [*result["speakers"].items(), ("pooled", result["pooled"]), ("unseen text", result["unseen_text"])]
    for speaker, f in rows:
        phones = f["model"]["phones"] if f["model"] else 0
        lines.append(f"{speaker:<12} {phones:>7} {cell(f['model']):>17} {cell(f['festival']):>20}")
    m = result["model_all"]
    lines.append(
        f"{result['split']}: {result['utterances']} utterances, frames per phone "
        f"({result['unit']} durations summed), "
        f"edge silences left out; model over all: RMSE {m['rmse_frames']:.2f}, "
        f"correlation {'-' if m['correlation'] is None else format(m['correlation'], '.3f')}; "
        f"Festival ({result['voice']}): {len(result['mismatched'])} utterances with other phones, left out"
        + (
            f" ({', '.join(x['utterance'] for x in result['mismatched'][:5])})"
            if result["mismatched"]
            else ""
        )
    )
    return lines
