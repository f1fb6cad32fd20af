"""Declarative per-corpus recipes: TOML files, layered as built-in < file < ``--set``.

The built-in recipe of a corpus (``recipes/<corpus>.toml`` laid over
``recipes/common.toml``, shipped as package data) is also its schema: a user recipe or an
override may only set keys that exist there, with a value of the same kind.
Tables listed in `OPEN_TABLES` take any key (a speaker table, say). Every value is then
checked against its rule in `featprep.recipe_schema` (ranges, choices), and
`check_recipe_paths` checks the files and folders a recipe names against a corpus root,
all before any file of the corpus is read.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ArgumentError, CorpusError, FeatprepError, RecipeError
from .recipe_schema import check_recipe

OPEN_TABLES = ("speakers.gender",)


def builtin_recipe_path(corpus: str) -> Path:
    """Path of the built-in recipe of ``corpus`` inside the installed package."""
    path = Path(str(resources.files("featprep.recipes") / f"{corpus}.toml"))
    if not path.is_file():
        known = sorted(p.name.removesuffix(".toml") for p in path.parent.glob("*.toml"))
        raise RecipeError(f"no built-in recipe for corpus {corpus!r}; expected one of {known}")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:  # TOML is UTF-8
        raise RecipeError(f"recipe file {path} is not valid TOML: {e}") from None
    except OSError as e:  # a folder, no permission
        raise RecipeError(f"recipe file {path} cannot be read: {e.strerror or type(e).__name__}") from None


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    if isinstance(default, str):
        # a string default may name a mode ("all") that a number also expresses
        return isinstance(value, str | int)
    return isinstance(value, type(default))


def _set(recipe: dict[str, Any], key: str, value: Any, origin: str, origins: dict[str, str]) -> None:
    parts = key.split(".")
    table = recipe
    for i, part in enumerate(parts[:-1]):
        sub = table.get(part)
        if not isinstance(sub, dict):
            raise RecipeError(f"{origin}: unknown recipe key {key!r} (no table {'.'.join(parts[: i + 1])!r})")
        table = sub
    parent, leaf = ".".join(parts[:-1]), parts[-1]
    origins[key] = origin
    if parent in OPEN_TABLES:
        table[leaf] = value
        return
    if leaf not in table:
        choices = ", ".join(sorted(f"{parent}.{k}" if parent else k for k in table))
        raise RecipeError(f"{origin}: unknown recipe key {key!r}; known keys here: {choices}")
    if isinstance(table[leaf], dict) or not _same_kind(table[leaf], value):
        raise RecipeError(
            f"{origin}: recipe key {key!r} expects a value like {table[leaf]!r}, found {value!r}"
        )
    table[leaf] = value


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in OPEN_TABLES:
            yield from _flatten(v, key + ".")
        elif isinstance(v, dict):
            for kk, vv in v.items():
                yield f"{key}.{kk}", vv
        else:
            yield key, v


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> None:
    """Lay a built-in corpus recipe over the common one (new keys allowed)."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as a TOML value, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected key=value, e.g. trim.top_db=35")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def load_recipe(corpus: str, path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Resolve a recipe: the built-in one of ``corpus``, then ``path``, then overrides.

    Parameters
    ----------
    corpus : name of a built-in recipe (``vctk``, ``cmu_arctic``).
    path : optional TOML file with some of the keys to change.
    overrides : ``key=value`` strings, as given to ``--set``.

    Returns
    -------
    The resolved recipe as nested dicts (what ``manifest.json`` records). Raises
    `RecipeError` naming the key (and where it was set) for an unknown key, a value of
    the wrong kind or outside its range (`featprep.recipe_schema`).
    """
    origins: dict[str, str] = {}
    recipe = _read_toml(builtin_recipe_path("common"))
    _merge(recipe, _read_toml(builtin_recipe_path(corpus)))
    if path is not None:
        user = _read_toml(Path(path))
        if user.get("corpus", corpus) != corpus:
            raise RecipeError(f"recipe {path} is for corpus {user['corpus']!r}, not {corpus!r}")
        for key, value in _flatten(user):
            _set(recipe, key, value, f"recipe {path}", origins)
    for text in overrides:
        key, value = parse_override(text)
        _set(recipe, key, value, f"--set {text}", origins)
    check_recipe(dict(_flatten(recipe)), origins)
    return recipe


def load_corpus_recipe(
    corpus: str, root: str | Path, path: str | Path | None = None, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """`load_recipe` for the corpus at ``root``, checked with the files and folders it names
    (`check_recipe_paths`): what ``prepare`` and ``align`` do before any corpus file is read."""
    from .corpora import CORPORA

    if corpus not in CORPORA:
        raise ArgumentError(f"unknown corpus {corpus!r}; expected one of {list(CORPORA)}")
    recipe = load_recipe(corpus, path, overrides)
    if not Path(root).is_dir():
        raise CorpusError(f"corpus root {root} does not exist or is not a directory")
    check_recipe_paths(recipe, root)
    return recipe


def check_recipe_paths(recipe: dict[str, Any], root: str | Path) -> None:
    """Check the files and folders ``recipe`` names, for a corpus at ``root``.

    ``labels.dir`` (sources ``dir``, ``festival``, ``textgrid``) is read relative to the corpus root
    (an absolute path stays as it is) and must be a folder; the question set must load
    when there are labels; ``pase.checkpoint``, when given, must be a file. Raises
    `RecipeError` naming the key, its value and the path looked at. With the ``arctic``,
    ``textgrid`` and ``align`` sources, ``labels.voice`` (and ``align.bootstrap_voices``)
    must be installed Festival voices.
    """
    labels = recipe["labels"]
    if labels["source"] in ("dir", "festival", "textgrid"):
        folder = Path(root) / labels["dir"]
        if not folder.is_dir():
            relative = "" if Path(labels["dir"]).is_absolute() else " (relative to the corpus root)"
            raise RecipeError(
                f"labels.dir = {labels['dir']!r}{relative} is not a folder: {folder} does not exist"
            )
    if labels["source"] in ("arctic", "textgrid", "align"):
        from .festival import voice_command

        voices = [("labels.voice", labels["voice"])]
        if labels["source"] in ("align", "arctic"):  # arctic: utterances without lab/ are aligned
            voices += [("align.bootstrap_voices", v) for v in recipe["align"]["bootstrap_voices"]]
        try:
            for setting, voice in voices:
                voice_command(voice, setting=setting)
        except FeatprepError as e:
            raise RecipeError(str(e)) from None
    if labels["source"] != "none":
        from .labels.questions import load_questions

        try:
            load_questions(recipe["linguistic"]["questions"])
        except FeatprepError as e:
            raise RecipeError(f"linguistic.questions = {recipe['linguistic']['questions']!r}: {e}") from None
    checkpoint = recipe["pase"]["checkpoint"]
    if checkpoint and not Path(checkpoint).is_file():
        raise RecipeError(f"pase.checkpoint = {checkpoint!r}: {Path(checkpoint).resolve()} is not a file")
