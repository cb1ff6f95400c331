"""ferryman: move PyTorchJobs to Kubeflow Trainer v2 and experiments between trackers."""

__version__ = "0.1.0"
