"""Streaming KD (seed 003): chunk masks, APC pairing and frame-level KD (kd), the ESPnet task that trains the
streaming CTC student (task), and the chunk-by-chunk decoder with its latency figures (stream)."""
