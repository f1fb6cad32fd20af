"""One exception family: the library raises these, the CLI turns them into one line."""


class FeatprepError(Exception):
    """Base of every error featprep reports to a user."""


class RecipeError(FeatprepError):
    """A recipe file or a ``--set`` override is invalid."""


class CorpusError(FeatprepError):
    """A corpus root is missing or does not have the expected layout."""


class ArgumentError(FeatprepError):
    """A library function was called with arguments it cannot work with."""


class OutputError(FeatprepError):
    """The output location cannot be written, or holds something unexpected."""


class NoValidUtterances(FeatprepError):
    """Every utterance of a corpus was rejected."""


class Rejected(Exception):
    """One utterance cannot be used; the run records it and goes on.

    Not a `FeatprepError`: it never reaches the user as an error, only as a row of
    ``rejected.tsv``.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class CorruptCorpus(OutputError):
    """A prepared corpus does not match its manifest or breaks the shard contract."""
