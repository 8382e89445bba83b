"""A local run of the pipeline with kfp.local.

- ``localrun``: a local run: quiet progress, the cache, one step, clean stops;
- ``progress``: the lines a local run shows as its steps start, finish or fail;
- ``launcher``: what kfp.local starts for each step of a local run (step logs, events, the warm
  process that forks the steps);
- ``undeclaredimport``: the modules a step of a local run imported that its cluster installs lack.
"""
