"""ferryman-dev: the test harness (local control plane, PKI, MLflow servers, demo, pytest plugins)."""
