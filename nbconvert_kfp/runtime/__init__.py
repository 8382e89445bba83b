"""What ships into every pipeline step: the step runtime, imported only from the standard library.

Modules here run inside KFP steps, whose images have Python and kfp and nothing of
nbconvert-kfp: they import the standard library only (a marshal backend imports its
library, numpy or torch say, the first time a value of that library is saved or loaded).
The component builder packs :func:`sources` into the archive the steps load; a test
checks the import rule.

- ``figure``: the matplotlib backend that puts a shown figure in place in the report;
- ``marshal``: save a variable to an artifact and load it back, by type;
- ``report``: a step's cells and outputs as an HTML page;
- ``step``: ``Step``, which runs a step's cells in a notebook-like namespace.
"""

from __future__ import annotations

from pathlib import Path

#: The modules shipped into every step, besides this package's ``__init__``.
MODULES = ("figure", "marshal", "report", "step")


def sources() -> dict[str, str]:
    """Archive path -> source text of everything the steps import from nbconvert-kfp.

    The steps import ``nbconvert_kfp.runtime.step``; ``nbconvert_kfp.marshal`` stays the
    public name users register marshal backends under, so the package's ``__init__`` and
    that alias module travel too.
    """
    runtime = Path(__file__).parent
    package = runtime.parent
    files = {"nbconvert_kfp/__init__.py": package / "__init__.py",
             "nbconvert_kfp/marshal.py": package / "marshal.py",
             "nbconvert_kfp/runtime/__init__.py": runtime / "__init__.py"}
    files.update({f"nbconvert_kfp/runtime/{name}.py": runtime / f"{name}.py" for name in MODULES})
    return {path: file.read_text(encoding="utf-8") for path, file in files.items()}
