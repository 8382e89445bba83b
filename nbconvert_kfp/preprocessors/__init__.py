"""The preprocessor chain of the ``kfp`` exporter: tag parser -> dependency analyzer -> component builder."""

from .componentbuilder import ComponentBuilder, MarshalInjector
from .dependencyanalyzer import DependencyAnalyzer
from .tagparser import TagParser

__all__ = ["TagParser", "DependencyAnalyzer", "ComponentBuilder", "MarshalInjector"]
