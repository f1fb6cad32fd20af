"""The report's HTML: one page, inline CSS, figures as ``data:`` PNGs, no script and no
external resource. Every value from the corpus is escaped."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..records import REASONS
from ..splits import SPLITS
from . import plots
from .gather import (
    EDGE_FACTOR,
    OCTAVE_FACTOR,
    Example,
    F0Histograms,
    Rejections,
    Statistics,
    f0_summary,
)

#: rejected utterances listed per reason code
WORST = 5
#: columns of rejected.tsv shown for each example
_REJECTED_SHOWN = ("utterance", "speaker", "stage", "detail", "path")
#: utterances listed in the trimming tables
TRIMMED = 5

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 2px; }
"""


def _img(data: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float | int | np.integer | np.floating) and not isinstance(v, bool):
            return f'<td class="n">{escape(_number(v))}</td>'
        return f"<td>{escape(str(v))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>\n" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _number(v: Any) -> str:
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    return f"{float(v):,.3g}" if abs(float(v)) < 1000 else f"{float(v):,.0f}"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<h2 id="{anchor}">{escape(title)}</h2>\n' + "\n".join(parts)


def _p(text: str, cls: str = "") -> str:
    return f"<p{f' class={cls!r}' if cls else ''}>{escape(text)}</p>"


def speakers_section(manifest: dict[str, Any]) -> str:
    speakers = sorted(manifest["speakers"], key=lambda s: s["id"])
    rows = []
    for s in speakers:
        seconds = s.get("seconds", {})
        rows.append(
            [s["id"], s.get("gender", "unknown"), s.get("role", "")]
            + [seconds.get(split, 0.0) / 3600 for split in SPLITS]
            + [sum(seconds.values()) / 3600, sum(s.get("utterances", {}).values())]
        )
    totals = ["all", "", ""] + [sum(r[i] for r in rows) for i in range(3, len(SPLITS) + 5)]
    return _section(
        "speakers",
        "Hours per speaker and split",
        _p("Trimmed audio kept in the shards, from manifest.json's speaker table."),
        _img(plots.hours_figure(speakers), "minutes per speaker and split"),
        _table(
            ["speaker", "gender", "role", *(f"{s} h" for s in SPLITS), "total h", "utterances"],
            [*rows, totals],
        ),
    )


def durations_section(table: pd.DataFrame) -> str:
    stats = []
    for split in SPLITS:
        d = table.loc[table["split"] == split, "seconds"]
        if len(d):
            stats.append([split, len(d), d.min(), d.median(), d.max(), d.sum() / 3600])
    return _section(
        "durations",
        "Durations",
        _img(plots.durations_figure(table), "duration histograms"),
        _table(["split", "utterances", "shortest s", "median s", "longest s", "hours"], stats),
    )


def trim_section(table: pd.DataFrame) -> str:
    share = (table["lead"] + table["trail"]) / table["raw_seconds"]
    most = (
        table.assign(share=share).sort_values(["share", "utterance"], ascending=[False, True]).head(TRIMMED)
    )
    edge = table.assign(edge=np.minimum(table["lead"], table["trail"]))
    closest = edge.sort_values(["edge", "utterance"]).head(TRIMMED)
    cols = ["utterance", "speaker", "raw s", "kept s", "trimmed at start s", "trimmed at end s"]

    def rows(frame: pd.DataFrame) -> list[list[Any]]:
        return [
            [r.utterance, r.speaker, r.raw_seconds, r.seconds, r.lead, r.trail] for r in frame.itertuples()
        ]

    return _section(
        "trimming",
        "Silence trimmed",
        _p(
            "Per utterance, from the index: raw_trim_start is the silence left out at the start, the "
            "raw file's duration minus raw_trim_end the silence left out at the end."
        ),
        _img(plots.trim_figure(table), "silence trimmed per utterance"),
        "<h3>Most trimmed (share of the raw file)</h3>",
        _table(cols, rows(most)),
        "<h3>Least silence left out at an edge (speech may begin or end at the file's edge)</h3>",
        _table(cols, rows(closest)),
    )


def rejections_section(manifest: dict[str, Any], rejections: Rejections) -> str:
    counts = {code: int(n) for code, n in (manifest.get("rejected") or {}).items()}
    if not counts:
        return _section("rejections", "Rejections", _p("No utterance was rejected."))
    parts = [_img(plots.rejections_figure(counts), "rejections by reason")]
    if rejections.note:
        parts.append(_p(rejections.note, "note"))
    summary = [
        [code, n, REASONS.get(code, "(a code this featprep does not know)")]
        for code, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    ]
    parts.append(_table(["code", "utterances", "meaning"], summary))
    if rejections.rows:
        parts.append(
            _p(
                f"Up to {WORST} utterances per code from rejected.tsv: the worst first where the detail "
                "holds a measure (the order is given with the code), else in utterance order."
            )
        )
        parts.append(
            _table(
                ["code", "utterance", "speaker", "stage", "detail", "path"],
                [
                    [f"{code} ({rejections.order[code]})" if i == 0 else "", *(r[c] for c in _REJECTED_SHOWN)]
                    for code, rows in rejections.rows.items()
                    for i, r in enumerate(rows[:WORST])
                ],
            )
        )
    return _section("rejections", "Rejections", *parts)


def f0_section(manifest: dict[str, Any], hist: F0Histograms) -> str:
    if not hist.counts:
        return _section("f0", "F0 per speaker", _p("No acoustic stream (lf0, vuv): no F0 to show."))
    genders = {s["id"]: s.get("gender", "unknown") for s in manifest["speakers"]}
    rows = []
    for speaker in sorted(hist.counts):
        search = hist.ranges.get(speaker)
        median, off, edge = f0_summary(hist.counts[speaker], search)
        rows.append(
            [
                speaker,
                genders.get(speaker, "unknown"),
                f"{search[0]:g}-{search[1]:g}" if search else "per utterance",
                int(hist.counts[speaker].sum()),
                "" if median is None else round(median, 1),
                100 * off,
                100 * edge,
            ]
        )
    return _section(
        "f0",
        "F0 per speaker",
        _p(
            "Voiced frames (vuv > 0.5) of every split, F0 = exp(lf0), in 1/24-octave bins. Shaded: the "
            "recipe's search range for the speaker's gender (light: a speaker of unknown gender, searched "
            "per utterance an octave around its own median after a first pass over 50-600 Hz); red line: "
            "the median. Octave errors show as a second hump an octave above or below; a speaker of the "
            "wrong gender as frames piled against an end of the range."
        ),
        _img(plots.f0_figure(hist, genders), "F0 histograms per speaker"),
        _table(
            [
                "speaker",
                "gender",
                "search Hz",
                "voiced frames",
                "median Hz",
                f"% off the median by > x{OCTAVE_FACTOR:.2f}",
                f"% within x{EDGE_FACTOR:.3f} of a range end",
            ],
            rows,
        ),  # fmt: skip
    )


def statistics_section(manifest: dict[str, Any], stats: Statistics) -> str:
    parts = [_p(f"Source: {stats.source}.")]
    if "acoustic" in stats.streams:
        parts.append(_p("The lf0 column counts voiced frames only (as normalisation does).", "note"))
    rows = []
    for name, s in stats.streams.items():
        constant = [c for c, lo, hi in zip(s.columns, s.minimum, s.maximum, strict=True) if lo == hi]
        one = [s.mean[0], s.std[0], s.minimum[0], s.maximum[0]] if len(s.mean) == 1 else [""] * 4
        rows.append(
            [
                name,
                len(s.mean),
                int(s.count.max()),
                len(s.speakers),
                *one,
                len(constant),
                ", ".join(constant[:6]),
            ]
        )
    header = [
        "stream",
        "columns",
        "rows",
        "speakers",
        "mean",
        "std",
        "min",
        "max",
        "constant columns",
        "e.g.",
    ]
    parts.append(_table(header, rows))
    parts.append(
        _p("Mean, std, min and max of one-column streams are in the table; the others are drawn.", "note")
    )
    for name, s in stats.streams.items():
        if len(s.mean) > 1:
            parts.append(_img(plots.stream_figure(name, s), f"{name} statistics per column"))
    kept = {spec["name"] for spec in manifest["features"]} - set(stats.streams)
    if kept:
        parts.append(
            _p(f"Without statistics (vocabulary indices or per-utterance rows): {', '.join(sorted(kept))}.")
        )
    return _section("features", "Feature statistics", *parts)


def examples_section(examples: list[Example], phones_from: str) -> str:
    if not examples:
        return _section("examples", "Example utterances", _p("No utterance drawn (examples 0)."))
    phones = (
        f"Thin white lines: phone boundaries from {phones_from}, at the 5 ms frame resolution of the "
        "features, after trimming (silences merged as the labels were normalised)."
        if phones_from
        else "No linguistic stream in the shards: no phone boundaries."
    )
    parts = [
        _p(
            "Waveform and spectrogram (25 ms Hann window, up to 8 kHz, 80 dB range) on the raw file's time "
            "axis. Green dashed lines: the trim points (raw_trim_start and the end of the kept frames); "
            "outside them, what prepare left out. " + phones
        )
    ]
    for e in examples:
        parts.append(f"<h3>{escape(e.utterance)} ({escape(e.speaker)}, {escape(e.split)})</h3>")
        parts.append(_p(f"“{e.text}” Audio: {e.source}. Kept {e.trim[0]:.3f}-{e.trim[1]:.3f} s."))
        parts.append(_img(plots.example_figure(e), f"waveform and spectrogram of {e.utterance}"))
    return _section("examples", "Example utterances", *parts)


def render(
    directory: Path,
    manifest: dict[str, Any],
    table: pd.DataFrame,
    rejections: Rejections,
    hist: F0Histograms,
    examples: list[Example],
    phones_from: str,
    stats: Statistics,
) -> str:
    """The whole page."""
    raw_hours = table["raw_seconds"].sum() / 3600
    kept_hours = table["seconds"].sum() / 3600
    rejected = sum(int(n) for n in (manifest.get("rejected") or {}).values())
    labels = manifest["recipe"].get("labels", {}).get("source", "none")
    streams = ", ".join(spec["name"] for spec in manifest["features"]) or "none"
    version = manifest.get("versions", {}).get("featprep", "?")
    title = f"featprep report: {manifest.get('corpus', '?')} in {directory}"
    toc = " · ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in [
            ("speakers", "speakers"),
            ("durations", "durations"),
            ("trimming", "trimming"),
            ("rejections", "rejections"),
            ("f0", "F0"),
            ("features", "feature statistics"),
            ("examples", "examples"),
        ]
    )
    head = [
        f"<h1>{escape(title)}</h1>",
        _p(
            f"{len(table):,} utterances kept ({kept_hours:.3f} h after trimming, {raw_hours:.3f} h of raw "
            f"audio), {rejected:,} rejected; {table['speaker'].nunique()} speakers with kept audio. "
            f"Labels: {labels}. Streams: {streams}. featprep {version}."
        ),
        _p(
            "Layout and alignment contract checked; files not hashed (featprep validate "
            f"{directory} checks every sha256).",
            "note",
        ),
        f"<p>{toc}</p>",
    ]
    body = [
        *head,
        speakers_section(manifest),
        durations_section(table),
        trim_section(table),
        rejections_section(manifest, rejections),
        f0_section(manifest, hist),
        statistics_section(manifest, stats),
        examples_section(examples, phones_from),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
