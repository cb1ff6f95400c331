"""MLflow as a source and a destination.

* Tracking servers (`http(s)://`) and database stores (`sqlite:`, `postgresql:`, `mysql:`) go through MLflow's
  own store classes, each end with its own credentials (never the process-wide `MLFLOW_TRACKING_*` state).
  Metric points, the bulk of the data, take a lean path: JSON `log-batch` requests on a keep-alive session
  (servers) or `log_batch` straight into the SQL store.
* File stores (`mlruns/`, MLflow 1.x to 3.x layouts) are read directly from disk, so runs left RUNNING, old
  `meta.yaml` fields, and missing or corrupt files become explicit outcomes instead of silently skipped runs.

Modules: `fields` (MLflow's limits, field-like tags and keys), `backend` (one server or database end),
`reader`, `writer`, `filestore`.
"""
