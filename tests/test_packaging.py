"""The wheel, installed into a fresh virtual environment with only its declared dependencies,
runs the used-by path from outside the checkout.

The fresh environment gets its third-party packages from this test environment (no
download, no multi-GB CUDA torch): the distributions featprep's wheel requires, and what
they require, linked into one folder that a ``.pth`` puts on its path. Nothing else of this
environment is visible there: not the editable install of the checkout, not the test-only
packages, so an import of an undeclared package fails as it would for a user.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import soundfile as sf
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: what the build reads: copied, so that a stale ``build/`` of the checkout cannot help
SOURCES = ("featprep", "recipes", "setup.py", "setup.cfg", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """featprep's wheel, built from a copy of the sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp, src],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (path,) = tmp.glob("featprep-*.whl")
    return path


def _requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(z.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def _runtime(requirements: list[Requirement]) -> list[Requirement]:
    """The requirements that apply without an extra, on this platform."""
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def test_wheel_holds_every_module_and_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "featprep").rglob("*.py")}
    recipes = {
        f"featprep/recipes/{p.relative_to(ROOT / 'recipes').as_posix()}"
        for p in (ROOT / "recipes").rglob("*")
        if p.suffix in (".py", ".toml", ".hed")
    }
    assert "featprep/labels/stage.py" in modules and "featprep/recipes/questions/featprep_hts.hed" in recipes
    assert sorted(modules - names) == [] and sorted(recipes - names) == []


def test_every_imported_package_is_a_declared_dependency(wheel):
    """A third-party import in featprep names a distribution of install_requires or an extra."""
    declared = {
        canonicalize_name(r.name)
        for r in _requirements(wheel)
        if r.marker is None or not r.marker.evaluate({"extra": "test"})  # not the test extra's
    }
    owners = md.packages_distributions()
    imported = set()
    for path in (ROOT / "featprep").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"featprep"}
    assert "scipy" in third_party and "torch" in third_party
    undeclared = {
        m: owners.get(m)
        for m in third_party
        if not {canonicalize_name(d) for d in owners.get(m, [])} & declared
    }
    assert undeclared == {}


def _dependency_closure(requirements: list[Requirement]) -> list[md.Distribution]:
    """The installed distributions ``requirements`` need, transitively, each version checked."""
    found: dict[str, md.Distribution] = {}
    todo = list(requirements)
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in found:
            continue
        dist = md.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), f"{dist.name} {dist.version}: {req}"
        found[key] = dist
        todo += _runtime([Requirement(r) for r in dist.requires or []])
    return list(found.values())


def _fresh_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """A new venv with the wheel installed and its dependency closure linked in."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    ours = Path(sysconfig.get_paths()["purelib"])
    deps = tmp_path / "deps"
    deps.mkdir()
    tops = {
        Path(f).parts[0] for d in _dependency_closure(_runtime(_requirements(wheel))) for f in d.files or []
    }
    # setuptools >= 81 has no pkg_resources: featprep must not need it (pysptk imports it)
    for top in tops - {"..", "__pycache__", "pkg_resources"}:
        if not top.endswith(".pth") and (ours / top).exists():
            (deps / top).symlink_to(ours / top)
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "featprep-test-deps.pth").write_text(f"{deps}\n")
    return venv, site


def test_wheel_in_a_fresh_venv_runs_prepare_to_generate(wheel, real_arctic, tmp_path):
    venv, site = _fresh_venv(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    work = tmp_path / "work"  # outside the checkout
    work.mkdir()

    def run(*args: object) -> subprocess.CompletedProcess:
        r = subprocess.run(list(map(str, args)), capture_output=True, text=True, cwd=work, env=env)
        assert r.returncode == 0, f"{args}: {r.stderr}"
        return r

    # every module imports from the new venv, none from the checkout; pysptk without pkg_resources
    probe = run(
        venv / "bin" / "python",
        "-c",
        "import importlib, importlib.util, json, pkgutil, sys, featprep\n"
        "names = [m.name for m in pkgutil.walk_packages(featprep.__path__, 'featprep.')]\n"
        "names.remove('featprep.__main__')  # runs the command line\n"
        "mods = [importlib.import_module(n) for n in names]\n"
        "from featprep.compat import pysptk\n"
        "print(json.dumps({'files': [featprep.__file__] + [m.__file__ for m in mods], 'path': sys.path,\n"
        "  'pkg_resources': importlib.util.find_spec('pkg_resources') is not None,\n"
        "  'example': pysptk.util.example_audio_file()}))",
    )
    seen = json.loads(probe.stdout)
    assert len(seen["files"]) > 50 and all(f.startswith(f"{site}/featprep/") for f in seen["files"])
    assert not [p for p in seen["path"] if p.startswith(str(ROOT))]
    assert not seen["pkg_resources"] and Path(seen["example"]).is_file()

    featprep = venv / "bin" / "featprep"
    run(featprep, "prepare", "cmu_arctic", "--root", real_arctic, "--out", "data", "-q")
    assert (work / "data" / "manifest.json").is_file()
    run(featprep, "normstats", "data", "--min-frames", "0")
    trained = run(featprep, "train", "data", "--out", "run", "--preset", "small", "--steps", "3")
    assert '"step": 3' in trained.stdout and (work / "run" / "checkpoint.pt").is_file()
    run(featprep, "generate", "run", "--text", "Hi.", "--speaker", "slt", "--out", "hi.wav")
    audio, sr = sf.read(work / "hi.wav")
    assert sr == 16000 and len(audio) > 1600
