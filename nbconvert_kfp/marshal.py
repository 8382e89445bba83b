"""``nbconvert_kfp.marshal``: the public name of :mod:`nbconvert_kfp.runtime.marshal`.

Users register marshal backends under this name, in the notebook or in their own
code (``from nbconvert_kfp.marshal import resource_save``). Importing it gives the
runtime module itself, so a registration made through either name is seen by both.
"""

import sys

from .runtime import marshal as _marshal

sys.modules[__name__] = _marshal
