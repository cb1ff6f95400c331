"""Weights & Biases: run directories on disk (`offline`, over the `.wandb` framing in `datastore`), the
SDK-backed destination (`writer`) and the public API (`api`)."""
