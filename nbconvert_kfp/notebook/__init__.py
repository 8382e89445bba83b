"""What the notebook says: the tag grammar, step options, volumes, parameters and metrics cells, IPython syntax,
markdown cells."""
