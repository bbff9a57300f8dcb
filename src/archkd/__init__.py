"""archkd: architecture-aware knowledge distillation.

Public API: ``archkd.api`` (one function per CLI verb), ``load_config`` / ``Config``, and the subsystem packages
``data``, ``models``, ``teacher``, ``distill``, ``spaces``, ``search``, ``measure``, ``export``, ``report``.
"""
from archkd.config import Config, load_config
from archkd.errors import ArchkdError

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "ArchkdError", "__version__"]
