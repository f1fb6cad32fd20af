"""Package list for setuptools; everything else is in setup.cfg.

Every package under ``featprep/`` is found rather than listed, so a new subpackage cannot be
left out of the wheel; ``featprep.recipes`` lives in ``recipes/`` (``package_dir`` in
setup.cfg), where ``find_packages`` does not look, so it is added by name.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["featprep", "featprep.*"]), "featprep.recipes"])
