"""A wheel built from the repo carries the recipes as package data."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_recipes_and_loads_them(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path,
            ROOT,
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("featprep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        "featprep/recipes/common.toml",
        "featprep/recipes/vctk.toml",
        "featprep/recipes/cmu_arctic.toml",
    } <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -I: isolated from the checkout and its editable install; only the unpacked wheel and
    # the environment's dependencies are importable
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import featprep, featprep.recipe as r; "
        "assert featprep.__file__.startswith(sys.argv[1]), featprep.__file__; "
        "print(r.load_recipe('vctk')['corpus'], r.load_recipe('cmu_arctic')['speakers']['gender']['bdl'])"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["vctk", "M"]
