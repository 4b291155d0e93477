"""Whisper model handling: loading, the demo models, student creation, tokenizers."""
