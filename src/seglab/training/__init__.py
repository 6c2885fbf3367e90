"""Training: losses, learning-rate schedule, the LightningModule and the run driver."""
