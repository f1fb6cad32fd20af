"""A map-style `torch.utils.data.Dataset` over a prepared corpus, for models of any kind.

One item per kept utterance of the chosen splits, in the order of ``utterances.parquet``
(the corpus-wide table prepare writes beside the manifest): its id, speaker, split, audio
and the rows of every feature stream, sliced from the memory-mapped shards (nothing is
read until an item is asked for). The corpus is checked first, as ``train`` checks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import ArgumentError, CorruptCorpus
from .integrity import read_checked_manifest, verify_corpus
from .io import inside
from .manifest import UTTERANCES, check_splits, split_names
from .shards import open_shard
from .stage import clock_columns


class ShardDataset(torch.utils.data.Dataset):
    """The utterances of a prepared corpus as dictionaries of tensors.

    Parameters
    ----------
    directory : a prepared corpus (``featprep prepare``).
    splits : the splits whose utterances are items (default all three); one string is one
        split. A split the corpus does not have is a `FeatprepError`.
    streams : feature streams to return (default every stream of the corpus).
    verify : check the sha256 of every file first (`featprep.integrity.verify_corpus`).

    An item is ``{"utterance", "speaker", "split", "text", "audio", <stream>...}``: ``audio``
    float32 samples / 32768 at 16 kHz (``80 x n_frames`` of them), each stream a tensor of
    its stored dtype with its rows for the utterance (``n_frames`` at 5 ms; PASE's own
    frame count; ``n_phones`` for the phone-level ``ling_phone`` and ``durations``; one
    row for per-utterance streams). Shards are memory-mapped on first use
    in each process, so a `torch.utils.data.DataLoader` with workers sends none of their
    data to them. Items differ in length: batch them with a collate function that pads.
    """

    def __init__(
        self,
        directory: str | Path,
        splits: str | tuple[str, ...] | list[str] | None = None,
        streams: tuple[str, ...] | list[str] | None = None,
        verify: bool = True,
    ) -> None:
        self.directory = Path(directory)
        if splits is not None:
            splits = split_names(splits)
            check_splits(read_checked_manifest(self.directory), splits)
        manifest = verify_corpus(self.directory, splits=splits, hashes=verify)
        if UTTERANCES not in manifest.get("files", {}):
            raise CorruptCorpus(
                f"{self.directory} has no {UTTERANCES} (prepared by an older featprep): run featprep "
                "prepare again (complete shards are reused)"
            )
        rates = {f["name"]: f["rate"] for f in manifest["features"]}
        self.streams = list(rates) if streams is None else list(streams)
        unknown = [s for s in self.streams if s not in rates]
        if unknown:
            raise ArgumentError(f"stream(s) {unknown} not in {self.directory}; it has {list(rates)}")
        self.rates = {s: rates[s] for s in self.streams}
        table = pd.read_parquet(inside(self.directory, UTTERANCES, "file name"))
        # an utterance's row in its shard: per-utterance streams have one row each
        table["row"] = table.groupby("shard", sort=False).cumcount()
        if splits is not None:
            table = table[table["split"].isin(splits)].reset_index(drop=True)
        self.table = table
        self._shards: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"utterance {i} of {len(self)}")
        u = self.table.iloc[i]
        arrays = self._arrays(u["shard"])
        start, n = int(u["audio_offset"]), 80 * int(u["n_frames"])
        item: dict[str, Any] = {
            "utterance": u["utterance"],
            "speaker": u["speaker"],
            "split": u["split"],
            "text": u["text"],
            "audio": torch.from_numpy(arrays["audio"][start : start + n] / np.float32(32768.0)),
        }
        for stream, rate in self.rates.items():
            if rate == "frame":
                rows = slice(int(u["frame_offset"]), int(u["frame_offset"]) + int(u["n_frames"]))
            elif rate == "utterance":
                rows = slice(int(u["row"]), int(u["row"]) + 1)
            else:  # a stream with its own clock (PASE, phones): its count and offset columns
                count, offset = clock_columns(rate)
                rows = slice(int(u[offset]), int(u[offset]) + int(u[count]))
            item[stream] = torch.from_numpy(np.array(arrays[stream][rows]))
        return item

    def _arrays(self, shard: str) -> dict[str, np.ndarray]:
        if shard not in self._shards:
            self._shards[shard] = open_shard(inside(self.directory, shard, "shard name"))[1]
        return self._shards[shard]

    def __getstate__(self) -> dict[str, Any]:
        # memory maps pickle as copies of their data: a worker opens the shards itself
        return {**self.__dict__, "_shards": {}}
