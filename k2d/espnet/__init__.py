"""Interoperability with Kaldi/ESPnet: data directories of the pseudo-labelled chunks (the model contract
itself is k2d.train.model.WhisperKDModel, an espnet2 AbsESPnetModel)."""
