"""A KFP cluster: deploying to it, following its runs, reading their logs and metrics.

- ``deployment``: upload to a KFP cluster and start a run;
- ``endpoint``: the KFP API URL read strictly and rebuilt from its checked parts;
- ``transport``: every request to the KFP host bounded in time and size;
- ``redaction``: server text without terminal control sequences or secrets;
- ``monitor``: a run followed from outside: run and step states, durations, metrics;
- ``steplog``: a step's log from the KFP API server or the KFP UI's server;
- ``metadata``: metric values from ML Metadata over gRPC-web, as the KFP UI reads them;
- ``notebookpod``: the Kubeflow notebook server the script or the converter runs in (its namespace, image
  and workspace volume);
- ``datastore``: data files in a run (the notebook's own locally, the object store's copies on a cluster).
"""
