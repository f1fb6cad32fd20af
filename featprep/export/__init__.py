"""Exports of a prepared corpus to other toolkits' formats: Kaldi data directories
(`export_kaldi`) and lhotse manifests (`export_lhotse`). Neither needs the toolkit."""

from .kaldi import KaldiExport, export_kaldi
from .lhotse import LhotseExport, export_lhotse

__all__ = ["KaldiExport", "LhotseExport", "export_kaldi", "export_lhotse"]
