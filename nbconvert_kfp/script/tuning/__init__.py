"""Hyperparameter tuning: the notebook's search, run locally (``--tune``) or as a Katib Experiment.

- ``searchspace``: the hyperparameter search of the notebook's ``katib_metadata``, as typed records;
- ``search``: the search algorithms of a local tuning run (grid, random, Optuna's TPE);
- ``tuner``: local tuning (``--tune``): trials as local runs, several at a time, and the best one;
- ``trialworker``: the process that runs tuning trials one after another with one warm launcher;
- ``katib``: the Katib Experiment that runs the search on a cluster.
"""
