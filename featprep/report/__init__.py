"""``featprep report``: one self-contained HTML page about a prepared corpus.

Hours per speaker and split, duration histograms, the silence trimmed per utterance,
rejections by reason with the worst examples, per-speaker F0 histograms, per-stream
feature statistics and a few utterances drawn as waveform and spectrogram with their trim
points and phone boundaries. Plots are PNGs embedded as ``data:`` URIs; the page loads
nothing from anywhere and runs no script. Needs matplotlib (``featprep[report]``).

`gather` reads the corpus (shard by shard, memory-mapped), `plots` draws, `page` writes
the HTML.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ArgumentError
from ..integrity import verify_corpus
from ..io import atomic_write_text, check_output_file
from ..manifest import check_outside_corpus
from . import gather
from .page import render
from .plots import require_matplotlib


def write_report(directory: str | Path, out: str | Path, *, examples: int = 4) -> Path:
    """Write the report of the prepared corpus in ``directory`` to the HTML file ``out``.

    Parameters
    ----------
    directory : a folder ``featprep prepare`` wrote (``manifest.json``, ``shards/``).
    out : the HTML file, written atomically (its folder made when missing).
    examples : utterances drawn as waveform and spectrogram (speakers spread over the
        sorted list, each its utterance closest to its median duration).

    The corpus's layout and alignment contract are checked first (not the sha256 of every
    file: ``featprep validate`` does that). Raises `FeatprepError` (one line) for a missing
    matplotlib, an unwritable ``out`` or a corpus that is not whole.
    """
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 0:
        raise ArgumentError(f"examples must be an integer >= 0, found {examples!r}")
    require_matplotlib()
    directory, out = Path(directory), Path(out)
    check_outside_corpus(directory, out, "report")
    check_output_file(out, "report")
    manifest = verify_corpus(directory, hashes=False)
    table = gather.utterance_table(directory, manifest)
    hist, drawn, phones_from = gather.read_shards(directory, manifest, gather.pick_examples(table, examples))
    html = render(
        directory,
        manifest,
        table,
        gather.read_rejections(directory),
        hist,
        drawn,
        phones_from,
        gather.statistics(directory, manifest),
    )
    out.parent.mkdir(parents=True, exist_ok=True)  # checked writable above, made only now
    atomic_write_text(out, html)
    return out
