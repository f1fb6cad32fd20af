"""The report's figures: matplotlib (the optional extra ``featprep[report]``) drawn off
screen to PNG, returned base64-encoded for ``<img src="data:...">``.

Only `matplotlib.figure.Figure` is used, never pyplot: no global state, no GUI backend.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FeatprepError
from ..splits import SPLITS
from .gather import F0_EDGES, UNKNOWN_F0_RANGE, Example, F0Histograms, StreamSummary, f0_summary

SPLIT_COLOURS = {"train": "#4477aa", "valid": "#ee7733", "test": "#228833"}
DPI = 100


def require_matplotlib() -> None:
    """Raise `FeatprepError` in one line when matplotlib (``featprep[report]``) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise FeatprepError(
            "featprep report needs matplotlib: pip install 'featprep[report]' (or pip install matplotlib)"
        ) from None


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png(fig: Any) -> str:
    """The figure as a base64 PNG, without the software tag (same input, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def hours_figure(speakers: list[dict[str, Any]]) -> str:
    """Minutes per speaker, stacked by split (manifest.json's speaker table)."""
    names = [s["id"] for s in speakers]
    fig = _figure(8, 1.2 + 0.22 * len(names))
    ax = fig.add_subplot()
    left = np.zeros(len(names))
    for split in SPLITS:
        minutes = np.array([s.get("seconds", {}).get(split, 0.0) / 60 for s in speakers])
        ax.barh(names, minutes, left=left, color=SPLIT_COLOURS[split], label=split)
        left += minutes
    ax.invert_yaxis()
    ax.set_xlabel("minutes of trimmed audio")
    ax.legend(loc="lower right")
    ax.margins(y=0.01)
    return png(fig)


def durations_figure(table: pd.DataFrame) -> str:
    """Histograms of the kept utterances' durations per split, trimmed and raw."""
    fig = _figure(9, 3)
    top = float(table["raw_seconds"].max())
    bins = np.linspace(0.0, top * 1.02 + 0.05, 41)
    for i, (column, title) in enumerate([("seconds", "after trimming"), ("raw_seconds", "raw file")]):
        ax = fig.add_subplot(1, 2, i + 1)
        groups = [table.loc[table["split"] == s, column].to_numpy() for s in SPLITS]
        ax.hist(groups, bins=bins, stacked=True, color=[SPLIT_COLOURS[s] for s in SPLITS], label=list(SPLITS))
        ax.set_title(f"duration, {title}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("utterances")
    ax.legend()
    return png(fig)


def trim_figure(table: pd.DataFrame) -> str:
    """Histograms of the silence trimmed at the start and at the end of each utterance."""
    fig = _figure(9, 3)
    top = float(max(table["lead"].max(), table["trail"].max()))
    bins = np.linspace(0.0, top * 1.02 + 0.01, 41)
    for i, (column, title) in enumerate([("lead", "start"), ("trail", "end")]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.hist(table[column], bins=bins, color="#777777")
        ax.set_title(f"silence trimmed at the {title}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("utterances")
    return png(fig)


def rejections_figure(counts: dict[str, int]) -> str:
    """Rejected utterances per reason code."""
    codes = sorted(counts, key=lambda c: (-counts[c], c))
    fig = _figure(8, 1.0 + 0.25 * len(codes))
    ax = fig.add_subplot()
    ax.barh(codes, [counts[c] for c in codes], color="#cc3311")
    ax.invert_yaxis()
    ax.set_xlabel("rejected utterances")
    return png(fig)


def f0_figure(hist: F0Histograms, genders: dict[str, str]) -> str:
    """One panel per speaker: voiced frames per F0 bin (log axis), the search range shaded."""
    speakers = sorted(hist.counts)
    cols = min(4, len(speakers))
    rows = -(-len(speakers) // cols)
    fig = _figure(2.6 * cols, 1.9 * rows)
    for i, speaker in enumerate(speakers):
        ax = fig.add_subplot(rows, cols, i + 1)
        search = hist.ranges.get(speaker) or UNKNOWN_F0_RANGE
        ax.axvspan(*search, color="#dddddd" if hist.ranges.get(speaker) else "#f3f3f3", zorder=0)
        ax.stairs(hist.counts[speaker], F0_EDGES, fill=True, color="#4477aa")
        median = f0_summary(hist.counts[speaker], hist.ranges.get(speaker))[0]
        if median is not None:
            ax.axvline(median, color="#cc3311", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(F0_EDGES[0], F0_EDGES[-1])
        ax.set_xticks([50, 100, 200, 400, 800], ["50", "100", "200", "400", "800"])
        ax.minorticks_off()
        ax.set_yticks([])
        ax.set_title(f"{speaker} ({genders.get(speaker, 'unknown')})", fontsize=9)
        if i >= len(speakers) - cols:
            ax.set_xlabel("F0 (Hz)")
    return png(fig)


def stream_figure(name: str, s: StreamSummary) -> str:
    """Mean +- one standard deviation and the min..max range of every column of a stream."""
    dim = len(s.mean)
    fig = _figure(min(14, 4 + 0.05 * dim), 2.8)
    ax = fig.add_subplot()
    x = np.arange(dim)
    ax.fill_between(x, s.minimum, s.maximum, step="mid", color="#dddddd", label="min..max")
    ax.fill_between(x, s.mean - s.std, s.mean + s.std, step="mid", color="#99bbdd", label="mean +- std")
    ax.plot(x, s.mean, drawstyle="steps-mid", color="#224477", lw=1, label="mean")
    if dim <= 50:
        ax.set_xticks(x, s.columns, rotation=90, fontsize=7)
    ax.set_xlim(-0.5, dim - 0.5)
    ax.set_title(f"{name}: {dim} column(s)")
    ax.legend(fontsize=8, loc="upper right")
    return png(fig)


def spectrogram(audio: np.ndarray, rate: int, top: float = 8000.0) -> tuple[np.ndarray, np.ndarray]:
    """Level in dB (frequencies up to ``top`` x 5 ms frames; 25 ms Hann windows, centred)
    and the frequencies of its rows. ``top``: what a 16 kHz shard holds."""
    window, hop = max(16, round(0.025 * rate)), max(1, round(0.005 * rate))
    padded = np.pad(audio, (window // 2, window // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]
    freqs = np.fft.rfftfreq(window, 1 / rate)
    keep = freqs <= top
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(window), axis=1))[:, keep]
    return freqs[keep], 20 * np.log10(magnitude.T + 1e-7)


def example_figure(e: Example) -> str:
    """Waveform and spectrogram of one utterance, trim points and phone boundaries marked."""
    fig = _figure(12, 4.6)
    wave, spec = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    t0, seconds = e.offset, len(e.audio) / e.rate
    # the waveform as a min/max envelope per column of pixels: a plot of every sample of a
    # 48 kHz file would draw a million points for 1,200 pixels
    cols = max(1, min(len(e.audio), 2400))
    blocks = np.array_split(e.audio, cols)
    times = t0 + np.linspace(0, seconds, cols)
    wave.fill_between(
        times, [b.min() for b in blocks], [b.max() for b in blocks], color="#224477", lw=0, step="mid"
    )
    wave.set_ylim(-1, 1)
    wave.set_ylabel("amplitude")
    freqs, level = spectrogram(e.audio, e.rate)
    spec.imshow(
        level, origin="lower", aspect="auto", cmap="magma", vmin=level.max() - 80, vmax=level.max(),
        extent=(t0, t0 + seconds, 0, freqs[-1]), interpolation="nearest",
    )  # fmt: skip
    spec.set_ylabel("Hz")
    spec.set_xlabel("seconds (raw file's time)")
    for ax in (wave, spec):
        for edge in e.trim:
            ax.axvline(edge, color="#00cc66", lw=2, ls="--")
        ax.axvspan(t0, e.trim[0], color="#ffffff", alpha=0.25)
        ax.axvspan(e.trim[1], t0 + seconds, color="#ffffff", alpha=0.25)
    for i, (start, end, phone) in enumerate(e.phones):
        spec.axvline(start, color="#ffffff", lw=0.6, alpha=0.8)
        if phone:  # names on two rows, so that short phones' names do not overlap
            y = freqs[-1] * (0.97 if i % 2 == 0 else 0.89)
            spec.text((start + end) / 2, y, phone, color="white", fontsize=7, ha="center", va="top")
    spec.set_xlim(t0, t0 + seconds)
    return png(fig)
