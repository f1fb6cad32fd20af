"""``featprep report``: the page rendered in headless Chromium, every image decoded and not
blank, nothing loaded from outside, and what it draws checked against the corpus."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featprep.demo import DEMO_GENDERS, DEMO_LABELS
from featprep.errors import ArgumentError, FeatprepError, OutputError
from featprep.labels.xwaves import read_xwaves
from featprep.manifest import read_manifest, shard_paths
from featprep.normstats import normstats
from featprep.pipeline import prepare
from featprep.report import gather, write_report
from featprep.shards import open_shard
from featprep.validate import validate

#: Chromium's start-up on two busy cores can take a while
CHROMIUM_TIMEOUT = 300
WINDOW = (1280, 3000)
#: the test's copy of the page gets this script: each image's decoded size and the
#: variance of its pixels as Chromium drew them, written into the DOM (the report itself
#: has no script)
PROBE = """<script>
window.addEventListener("load", () => {
  const out = [];
  for (const img of document.images) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    let variance = 0;
    if (c.width && c.height) {
      const g = c.getContext("2d"); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0, s = 0, s2 = 0;
      for (let i = 0; i < d.length; i += 4) {
        const v = d[i] + d[i + 1] + d[i + 2]; n++; s += v; s2 += v * v;
      }
      variance = s2 / n - (s / n) ** 2;
    }
    out.push([img.naturalWidth, img.naturalHeight, variance]);
  }
  const pre = document.createElement("pre");
  pre.id = "probe"; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def corpus(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's CMU Arctic layout prepared with Festival's labels (every stream but PASE)."""
    out = tmp_path_factory.mktemp("report") / "arctic"
    prepare(
        "cmu_arctic",
        demo_corpus / "cmu_arctic",
        out,
        overrides=DEMO_GENDERS + DEMO_LABELS["cmu_arctic"],
        jobs=2,
        log=lambda _m: None,
    )
    return out


@pytest.fixture(scope="module")
def pages(corpus: Path) -> dict[str, str]:
    """The report before normstats (statistics from the shards) and after (from stats/)."""
    before = write_report(corpus, corpus.parent / "before.html")
    normstats(corpus)
    after = write_report(corpus, corpus.parent / "after" / "report.html", examples=3)
    return {"before": before.read_text(), "after": after.read_text()}


@pytest.fixture(scope="module")
def chromium(pages: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One headless Chromium run on the report: the DOM after the probe ran, and a screenshot."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed: make setup installs the Debian package"
    folder = tmp_path_factory.mktemp("chromium")
    page = folder / "page.html"
    page.write_text(pages["after"].replace("</body>", PROBE + "</body>"))
    shot = folder / "screenshot.png"
    run = subprocess.run(
        [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={folder / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--screenshot={shot}", "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    probe = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout)
    assert probe, "the probe did not run: " + run.stdout[-500:]
    return {"images": json.loads(probe.group(1)), "screenshot": shot}


class _Resources(HTMLParser):
    """Every tag and every attribute that can load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "background"):
                self.links.append((tag, name, value or ""))


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_chromium_decodes_and_draws_every_image(chromium, pages):
    images = chromium["images"]
    assert len(images) == len(_pngs(pages["after"])) >= 8
    for width, height, variance in images:
        assert width > 0 and height > 0
        assert variance > 100  # drawn pixels of more than one colour, not a blank box


def test_chromium_screenshot_is_not_blank(chromium):
    shot = np.asarray(Image.open(chromium["screenshot"]).convert("L"), dtype=np.float64)
    assert shot.shape == (WINDOW[1], WINDOW[0])
    assert shot.std() > 10
    assert len(np.unique(shot)) > 16


@pytest.mark.parametrize("which", ["before", "after"])
def test_every_embedded_png_decodes_and_is_not_blank(pages, which):
    pngs = _pngs(pages[which])
    assert len(pngs) == pages[which].count("<img ")
    for data in pngs:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
        assert image.shape[0] > 50 and image.shape[1] > 50
        assert image.std() > 10


def test_the_page_loads_nothing_from_outside_and_runs_no_script(pages):
    for page in pages.values():
        found = _Resources()
        found.feed(page)
        assert not {"script", "link", "iframe", "object", "embed", "audio", "video", "base"} & set(found.tags)
        for tag, name, value in found.links:
            if tag == "img" and name == "src":
                assert value.startswith("data:image/png;base64,")
            else:
                assert (tag, name) == ("a", "href") and value.startswith("#"), (tag, name, value)
        style = page[page.index("<style>") : page.index("</style>")]
        assert "url(" not in style and "@import" not in style and "@font-face" not in style


def test_the_page_shows_what_the_corpus_recorded(corpus, pages):
    manifest = read_manifest(corpus)
    page = pages["after"]
    for speaker in manifest["speakers"]:
        assert f"<td>{speaker['id']}</td>" in page
    for code in manifest["rejected"]:
        assert f"<td>{code}</td>" in page
    # details are escaped text, never markup: near_silent's reads "peak ... dBFS < ... dBFS"
    assert "dBFS &lt; -45.0 dBFS" in page and "dBFS < -45.0" not in page
    # where the feature statistics come from, in words
    assert "no stats/ (featprep normstats not run)" in pages["before"]
    assert "stats/ as featprep normstats wrote it (splits train)" in page
    assert "phone boundaries from ling_num" in page
    assert page.count("waveform and spectrogram of ") == 3
    assert pages["before"].count("waveform and spectrogram of ") == 4


def test_examples_trim_points_and_phones_match_the_corpus(corpus, demo_corpus):
    """The raw file between the drawn trim points is the shard's audio, sample for sample,
    and the drawn phones are the corpus's lab/ phones within a frame."""
    manifest = read_manifest(corpus)
    table = gather.utterance_table(corpus, manifest)
    chosen = gather.pick_examples(table, 6)
    _, examples, source = gather.read_shards(corpus, manifest, chosen)
    assert len(examples) == 6 and source.startswith("ling_num")
    shards = [open_shard(path) for _, path in shard_paths(corpus, manifest)]
    for e in examples:
        index, arrays = shards[int(table.loc[table["utterance"] == e.utterance, "shard"].iloc[0])]
        row = index.set_index("utterance").loc[e.utterance]
        kept = arrays["audio"][row.audio_offset : row.audio_offset + 80 * row.n_frames]
        assert e.offset == 0.0 and e.rate == 16000 and "the corpus file" in e.source
        start, end = (round(t * e.rate) for t in e.trim)
        assert np.array_equal(np.round(e.audio[start:end] * 32768).astype(np.int16), kept)

        lab = read_xwaves(demo_corpus / "cmu_arctic" / json.loads(row.custom)["lab"])
        inner = [(a, p) for a, _, p in lab if e.trim[0] < a < e.trim[1]]
        drawn = [(a, p) for a, _, p in e.phones[1:]]
        # the labels' edge silences are "sil" once normalised, lab/ calls every pause "pau"
        assert [p.replace("sil", "pau") for _, p in drawn] == [p for _, p in inner]
        # within a frame, and lab/'s 0.1 ms rounding of Festival's times
        assert np.abs(np.array([a for a, _ in drawn]) - [a for a, _ in inner]).max() <= 0.005 + 1e-4
        # the ling stream's phone-level columns, the source without ling_num, agree
        frames = slice(int(row.frame_offset), int(row.frame_offset + row.n_frames))
        by_ling = gather.phone_spans(manifest, {k: v for k, v in arrays.items() if k != "ling_num"}, frames)
        assert by_ling[0] == gather.phone_spans(manifest, arrays, frames)[0]


def test_rejections_worst_first(tmp_path):
    details = [
        "0.42 s after trimming < 0.5 s",
        "0.05 s after trimming < 0.5 s",
        "0.30 s after trimming < 0.5 s",
    ]
    rows = [f"u{i}\ts\taudio\ttoo_short\t{d}\ts/u{i}.wav" for i, d in enumerate(details)]
    rows.append("u9\ts\tdiscover\tempty_text\ttranscript is empty\ts/u9.wav")
    (tmp_path / "rejected.tsv").write_text(
        "utterance\tspeaker\tstage\tcode\tdetail\tpath\n" + "\n".join(rows) + "\n"
    )
    found = gather.read_rejections(tmp_path)
    assert [r["utterance"] for r in found.rows["too_short"]] == ["u1", "u2", "u0"]
    assert found.order == {"empty_text": "in utterance order", "too_short": "shortest first"}


def test_empty_rejections_file_is_no_rejections(tmp_path):
    (tmp_path / "rejected.tsv").write_bytes(b"")
    found = gather.read_rejections(tmp_path)
    assert (found.rows, found.order, found.note) == ({}, {}, "")


def test_rejections_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "rejected.tsv")
    said: list[str] = []

    def read() -> None:
        try:
            gather.read_rejections(tmp_path)
        except FeatprepError as e:
            said.append(str(e))

    # a daemon thread: opening the FIFO (the bug) blocks it forever, the test fails instead of hanging
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert said == [f"{tmp_path / 'rejected.tsv'} is not a regular file: expected prepare's rejection table"]


def _featprep(*args: object, hide_matplotlib: bool = False) -> subprocess.CompletedProcess:
    hide = "import sys; sys.modules['matplotlib'] = None; " if hide_matplotlib else ""
    code = f"{hide}from featprep.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600
    )


def _one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_examples_must_be_a_count(corpus, tmp_path):
    with pytest.raises(ArgumentError, match="examples must be an integer >= 0"):
        write_report(corpus, tmp_path / "r.html", examples=-1)


def test_bad_input_is_one_line(corpus, tmp_path):
    out = tmp_path / "r.html"
    _one_line(_featprep("report", tmp_path / "nowhere", "--out", out), "manifest.json does not exist")
    _one_line(
        _featprep("report", corpus, "--out", out, hide_matplotlib=True), "pip install 'featprep[report]'"
    )
    _one_line(_featprep("report", corpus, "--out", tmp_path), "is a folder")
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "rejected.tsv").write_text("a\tb\n")
    _one_line(_featprep("report", broken, "--out", out), "rejected.tsv: header", "not written by prepare")
    next((broken / "shards" / "train").glob("*/acoustic.npy")).write_bytes(b"\x93NUMPY")
    _one_line(_featprep("report", broken, "--out", out), "acoustic.npy cannot be read")
    assert not out.exists()


def test_examples_without_the_corpus_draw_the_shard_audio(corpus, tmp_path):
    """A corpus read away from its recordings: the trimmed audio of the shard, placed at its
    trim point, and the page says so."""
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["corpus_root"] = str(tmp_path / "elsewhere")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    table = gather.utterance_table(moved, manifest)
    chosen = gather.pick_examples(table, 1)
    # where the recording should be, a FIFO: opening it would wait for a writer for ever
    where = chosen.iloc[0]
    index, _ = open_shard(shard_paths(moved, manifest)[int(where.shard)][1])
    fifo = tmp_path / "elsewhere" / index["audio_path"].iloc[int(where.row)]
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    _, [e], _ = gather.read_shards(moved, manifest, chosen)
    index, arrays = open_shard(moved / "shards" / e.split / "shard-000000")
    row = index.set_index("utterance").loc[e.utterance]
    kept = arrays["audio"][row.audio_offset : row.audio_offset + 80 * row.n_frames]
    assert e.source.startswith("the shard's trimmed audio only:") and "is not a file under" in e.source
    assert e.offset == e.trim[0] == row.raw_trim_start and e.rate == 16000
    assert np.array_equal(e.audio * 32768, kept)
    page = write_report(moved, tmp_path / "r.html", examples=1).read_text()
    assert "the shard&#x27;s trimmed audio only" in page


def test_same_corpus_same_page(corpus, tmp_path):
    first = write_report(corpus, tmp_path / "a.html", examples=1).read_bytes()
    assert write_report(corpus, tmp_path / "b.html", examples=1).read_bytes() == first


def test_statistics_of_other_shards_are_not_shown(corpus, tmp_path):
    """stats/ that does not fit the shards (a file changed since normstats): the page's
    statistics come from the shards, and it says why."""
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    normstats(copy)
    with open(copy / "stats" / "acoustic.npz", "ab") as f:
        f.write(b"\0")
    found = gather.statistics(copy, read_manifest(copy))
    assert found.source.startswith("merged now from the shards' stats.npz, splits train: stats/ does not fit")
    assert "stats/acoustic.npz: sha256 differs" in found.source
    assert set(found.streams) == {"audio", "ling", "ling_num", "acoustic", "ling_phone", "durations"}


@pytest.mark.parametrize(
    "inside", ["manifest.json", "rejected.tsv", "shards/train/r.html", "stats/r.html", "align/r.html"]
)
def test_a_report_inside_what_prepare_wrote_is_refused(corpus, tmp_path, inside):
    """--out onto the manifest (or into a shard folder) would leave a corpus that no longer
    validates; a new name beside manifest.json is fine."""
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with pytest.raises(OutputError, match=f"inside the prepared corpus .* \\(at {inside}\\)"):
        write_report(copy, copy / inside)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    write_report(copy, copy / "report.html")
    assert validate(copy) == []


def test_a_manifest_that_is_not_a_file_is_one_line(corpus, tmp_path):
    with pytest.raises(OutputError, match="is not a folder"):
        read_manifest(__file__)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "manifest.json")
    with pytest.raises(OutputError, match="manifest.json is not a regular file"):
        read_manifest(fifo)  # would wait for a writer for ever
