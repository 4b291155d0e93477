"""k2d: knowledge distillation of Whisper-style speech recognisers from unlabelled long-form speech."""

__version__ = "0.1.0"
