"""The multi-speaker SampleRNN of the SSW 2019 system: model, TBPTT loader, trainer."""
