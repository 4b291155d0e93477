"""Text processing shared by every stage: scripts, normalisation, mixed-error-rate units, phonemes."""
