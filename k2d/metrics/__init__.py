"""Distances between transcripts: edit distances (MER/CER/WER/PER), n-gram looping, the composite."""
