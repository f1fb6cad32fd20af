"""Audio: decode, level checks, resampling to 16 kHz and silence trimming."""

from .decode import downmix, probe, read_audio
from .levels import check_levels
from .resample import resample, to_int16
from .trim import speech_bounds, trim_bounds

__all__ = [
    "check_levels",
    "downmix",
    "probe",
    "read_audio",
    "resample",
    "speech_bounds",
    "to_int16",
    "trim_bounds",
]
