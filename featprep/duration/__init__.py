"""The duration model: phone (or HMM state) durations from the question set's answers.

`data` reads the phone-level stream of prepared shards (``ling_phone.npy``,
``durations.npy``), `model` is the network (a bidirectional GRU over an utterance's
phones, or Merlin's feed-forward baseline), `train` trains it through the shared loop
(`featprep.samplernn.loop`), `run` times new labels with a trained run and `evaluate`
compares it with Festival's own predicted durations.
"""
