"""featprep: speech corpora to training shards for multi-speaker SampleRNN TTS."""

__version__ = "0.1.0"

#: 16 kHz audio, one conditioning frame = 5 ms = 80 samples (the alignment contract).
SAMPLE_RATE = 16000
FRAME_SHIFT = 80
