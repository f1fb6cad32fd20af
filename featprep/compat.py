"""pysptk importable with or without ``pkg_resources``.

pysptk 1.0.1 (the latest release) imports ``pkg_resources`` at import time, and calls
only ``pkg_resources.resource_filename`` (in ``pysptk.util.example_audio_file``).
setuptools 81 removed ``pkg_resources``, and Python 3.12's virtual environments have no
setuptools at all. Requiring ``setuptools<81`` would downgrade the user's setuptools, so
where ``pkg_resources`` cannot be imported, pysptk is imported with a stand-in that
provides that one function, and the stand-in is taken out of ``sys.modules`` again:
nothing else in the process sees it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path


def _resource_filename(module: str, resource: str) -> str:
    """``pkg_resources.resource_filename``: ``resource`` in the folder of ``module``'s file."""
    return str(Path(importlib.import_module(module).__file__).parent / resource)


def _import_pysptk() -> types.ModuleType:
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        with warnings.catch_warnings():
            # the real pkg_resources warns that it is deprecated: nothing a user can act on
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import pysptk
        return pysptk
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = _resource_filename
    sys.modules["pkg_resources"] = stand_in
    try:
        import pysptk
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]
    return pysptk


pysptk = _import_pysptk()
