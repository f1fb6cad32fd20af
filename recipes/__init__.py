"""Built-in recipes (TOML), shipped as the package data of ``featprep.recipes``."""
