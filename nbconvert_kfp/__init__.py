"""nbconvert-kfp: an nbconvert exporter that turns a tagged notebook into a KFP v2 pipeline.

The exporter lives in ``nbconvert_kfp.exporter`` and is found by nbconvert through the
``nbconvert.exporters`` entry point (``jupyter nbconvert --to kfp``). This module imports
nothing, so importing the runtime (``nbconvert_kfp.marshal``) stays cheap.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    """The Jupyter server extension (its API: ``nbconvert_kfp.serverextension``)."""
    return [{"module": "nbconvert_kfp"}]


def _load_jupyter_server_extension(serverapp):
    """Register the nbconvert-kfp API with the Jupyter server; imported only then."""
    from .serverextension import _load_jupyter_server_extension as load

    load(serverapp)
