"""Multi-teacher encoder KD (seed 002): teacher embeddings (embed), k-means codebooks (codebooks), the encoder-KD
losses (losses), the ESPnet data directories of embeddings (data_dir) and the ESPnet task that pretrains a
student encoder on them (task)."""
