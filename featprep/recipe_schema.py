"""The valid values of every recipe key: kinds, ranges, choices, list shapes.

`SCHEMA` has one `Rule` per key of the built-in recipes (``recipes/common.toml``,
``vctk.toml``, ``cmu_arctic.toml``; ``*`` stands for any key of an open table); a key
without a rule is refused, so a new key cannot slip in unchecked. `check_recipe` runs
when a recipe is loaded, before any file of a corpus is read; `CROSS_CHECKS` hold the
limits that join two keys.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from . import SAMPLE_RATE
from .acoustic import F0_METHODS
from .errors import RecipeError
from .labels.linguistic import FRAME_FEATURES
from .labels.sources import SOURCES
from .pase.architectures import ARCHITECTURES

#: placeholders ``labels.pattern`` may use (see `featprep.labels.sources.label_path`)
PATTERN_FIELDS = ("speaker", "utterance", "stem", "tree")
#: the F0 search limits of `featprep.acoustic.acoustic_features`' own second pass: below
#: 40 Hz RAPT's lag buffers grow past what it allocates (a crash at 2-5 Hz)
F0_LIMITS = (40.0, SAMPLE_RATE / 4)


@dataclass(frozen=True)
class Rule:
    """What a key takes, in words for the error message, and the test of a value."""

    expected: str
    test: Callable[[Any], bool]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
    integer: bool = False,
) -> Rule:
    """A finite number (an integer with ``integer``) in ``[lo, hi]``; ``above``/``below``
    exclude the bound itself."""
    kind = "an integer" if integer else "a number"
    limits = []
    if lo is not None:
        limits.append(f"{'>' if above else '>='} {lo:g}")
    if hi is not None:
        limits.append(f"{'<' if below else '<='} {hi:g}")

    def test(v: Any) -> bool:
        if not _is_number(v) or (integer and not isinstance(v, int)):
            return False
        if lo is not None and (v <= lo if above else v < lo):
            return False
        return hi is None or (v < hi if below else v <= hi)

    return Rule(" ".join([kind] + [" and ".join(limits)] if limits else [kind]), test)


def choice(*values: Any) -> Rule:
    return Rule(f"one of {list(values)}", lambda v: not isinstance(v, bool) and v in values)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def text(pattern: str | None = None, what: str = "a string") -> Rule:
    return Rule(
        what, lambda v: isinstance(v, str) and (pattern is None or re.fullmatch(pattern, v) is not None)
    )


def names(*, empty: bool = True, unique: bool = False) -> Rule:
    """A list of names (non-empty strings without white space)."""

    def test(v: Any) -> bool:
        if not isinstance(v, list) or (not empty and not v) or (unique and len(set(v)) != len(v)):
            return False
        return all(isinstance(x, str) and x and not any(c.isspace() for c in x) for x in v)

    words = "a list of names (no white space)" if empty else "a non-empty list of names (no white space)"
    return Rule(words + (", each once" if unique else ""), test)


def integers(lo: int, *, empty: bool = True) -> Rule:
    """A list of integers >= ``lo``."""
    one = number(lo, integer=True)
    words = f"a list of integers >= {lo}" if empty else f"a non-empty list of integers >= {lo}"
    return Rule(words, lambda v: isinstance(v, list) and (empty or bool(v)) and all(one.test(x) for x in v))


def _f0_pair(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(_is_number(x) for x in v)
        and F0_LIMITS[0] <= v[0] < v[1] <= F0_LIMITS[1]
    )


def _label_pattern(v: Any) -> bool:
    """A relative path template with only known placeholders, never leaving labels.dir."""
    if not isinstance(v, str) or not v or PurePosixPath(v).is_absolute():
        return False
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError:
        return False
    return all(f in PATTERN_FIELDS for f in fields) and ".." not in PurePosixPath(v).parts


F0_RANGE = Rule(f"[low, high] Hz with {F0_LIMITS[0]:g} <= low < high <= {F0_LIMITS[1]:g}", _f0_pair)


def _power_of_two(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 64 <= v <= 65536 and v & (v - 1) == 0


SCHEMA: dict[str, Rule] = {
    "corpus": choice("vctk", "cmu_arctic"),
    # discover (vctk.toml, cmu_arctic.toml)
    "discover.version": choice("auto", "0.80", "0.92"),
    "discover.mic": choice("mic1", "mic2"),
    "discover.mic_fallback": flag(),
    "discover.exclude_speakers": names(),
    "speakers.gender.*": choice("M", "F"),
    # clean
    "clean.min_seconds": number(0.0),
    "clean.max_seconds": number(0.0, above=True),
    "clean.near_silent_dbfs": number(hi=0.0),
    "clean.clip_level": number(0.0, 1.0, above=True),
    "clean.clipping_fraction": number(0.0, 1.0),
    "clean.speaking_rate_factor": number(1.0),
    "clean.speaking_rate_min_utterances": number(1, integer=True),
    # trim
    "trim.top_db": number(0.0, above=True),
    "trim.noise_margin_db": number(0.0),
    "trim.noise_percentile": number(0.0, 100.0),
    "trim.smooth_frames": number(1, integer=True),
    "trim.margin_seconds": number(0.0),
    # split
    "split.seed": number(0, integer=True),
    "split.modeling_per_gender": Rule(
        '"all" or an integer >= 0', lambda v: v == "all" or number(0, integer=True).test(v)
    ),
    "split.adaptation_per_gender": number(0, integer=True),
    "split.test_seconds": number(0.0),
    "split.valid_seconds": number(0.0),
    "split.adaptation_test_seconds": number(0.0),
    "split.adaptation_valid_seconds": number(0.0),
    # test and valid each take at most this fraction: above a half, nothing might be left to train
    "split.max_heldout_fraction": number(0.0, 0.5),
    # shards
    "shards.max_seconds": number(0.0, above=True),
    # labels
    "labels.source": choice(*SOURCES),
    "labels.dir": text(),
    "labels.pattern": Rule(
        f"a relative path with placeholders from {{{', '.join(PATTERN_FIELDS)}}}, without '..'",
        _label_pattern,
    ),
    "labels.silence": names(empty=False),
    "labels.merlin_normalise": flag(),
    # with the arctic source, check_recipe_paths has featprep.festival.voice_command check it
    "labels.voice": text(),
    "labels.max_phone_edits": number(0, integer=True),
    "labels.max_text_chars": number(1, integer=True),
    "labels.festival_timeout": number(0.0, above=True),
    "labels.margin_seconds": number(0.0),
    "labels.max_end_error": number(0.0),
    "labels.max_boundary_error": number(0.0),
    # align
    "align.train_utterances_per_speaker": number(0, integer=True),
    "align.mixtures": number(1, 64, integer=True),
    "align.iterations": number(0, integer=True),
    "align.short_pause": flag(),
    "align.contexts": flag(),
    # with the align source, check_recipe_paths has featprep.festival.voice_command check each
    "align.bootstrap_voices": names(unique=True),
    "align.bootstrap_texts": number(0, integer=True),
    "align.outlier_mads": number(0.0, above=True),
    "align.outlier_min_drop": number(0.0),
    "align.outlier_min_utterances": number(2, integer=True),
    # linguistic
    "linguistic.questions": text(r".+", "a question set's name or a .hed file"),
    "linguistic.subphone_features": choice(*FRAME_FEATURES),
    "linguistic.compact": flag(),
    "linguistic.vocab.phone": names(empty=False, unique=True),
    "linguistic.vocab.vowel": names(empty=False, unique=True),
    "linguistic.vocab.gpos": names(empty=False, unique=True),
    "linguistic.vocab.tone": names(empty=False, unique=True),
    # acoustic
    "acoustic.enabled": flag(),
    "acoustic.f0_method": choice(*F0_METHODS),
    "acoustic.mcep_order": number(1, integer=True),
    "acoustic.alpha": number(-1.0, 1.0, above=True, below=True),
    "acoustic.fft_size": Rule("a power of two from 64 to 65536", _power_of_two),
    # a window shorter than the 5 ms frame shift leaves samples unanalysed
    "acoustic.window_seconds": number(0.005),
    "acoustic.f0_range.M": F0_RANGE,
    "acoustic.f0_range.F": F0_RANGE,
    # pase
    "pase.arch": choice(*ARCHITECTURES),
    "pase.checkpoint": text(),
    "pase.random_init_seed": number(-1, integer=True),
    "pase.device": choice("auto", "cpu", "cuda"),
    "pase.precision": choice("fp32", "bf16", "fp16"),
    "pase.batch_size": number(0, integer=True),
    "pase.dtype": choice("float16", "float32"),
}

#: (keys, test of their values, what must hold): limits joining two keys
CROSS_CHECKS: list[tuple[tuple[str, ...], Callable[..., bool], str]] = [
    (("clean.min_seconds", "clean.max_seconds"), lambda lo, hi: lo < hi, "must be below"),
    (
        ("acoustic.window_seconds", "acoustic.fft_size"),
        lambda seconds, fft: round(seconds * SAMPLE_RATE) <= fft,
        f"(in samples at {SAMPLE_RATE} Hz) must fit in",
    ),
    (
        ("acoustic.mcep_order", "acoustic.fft_size"),
        lambda order, fft: order < fft // 2,
        "must be below half of",
    ),
]


def rule_of(key: str) -> Rule | None:
    """The rule of ``key``; keys of an open table match its ``table.*`` rule."""
    return SCHEMA.get(key) or SCHEMA.get(key.rpartition(".")[0] + ".*")


def check_recipe(flat: dict[str, Any], origins: dict[str, str]) -> None:
    """Raise `RecipeError` for the first value of ``flat`` (key -> value) outside its rule,
    naming where it was set (``origins``: key -> recipe file, ``--set`` or built-in)."""
    for key, value in flat.items():
        origin = origins.get(key, "built-in recipe")
        rule = rule_of(key)
        if rule is None:
            raise RecipeError(f"{origin}: recipe key {key!r} has no rule in featprep/recipe_schema.py")
        if not rule.test(value):
            raise RecipeError(f"{origin}: recipe key {key!r} must be {rule.expected}, found {value!r}")
    for keys, test, relation in CROSS_CHECKS:
        if all(k in flat for k in keys) and not test(*(flat[k] for k in keys)):
            first, second = keys
            origin = origins.get(first) or origins.get(second, "built-in recipe")
            raise RecipeError(f"{origin}: {first} = {flat[first]!r} {relation} {second} = {flat[second]!r}")
