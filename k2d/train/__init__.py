"""Training: labels, data, losses, the ESPnet-contract model and the trainer."""
