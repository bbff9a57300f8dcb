"""The ``archkd`` command: a thin layer over ``archkd.api``.

Every verb accepts ``--config FILE.yaml`` and ``key.sub=value`` overrides (anywhere among the flags); its flags are
shorthands for config keys (``parser``). A user error prints one line (problem — fix) and exits with status 2; nothing
computed is lost (``main``).
"""
from archkd.cli.main import demo_defaults, main, run
from archkd.cli.parser import FLAG_KEYS, build_parser

__all__ = ["main", "run", "build_parser", "demo_defaults", "FLAG_KEYS"]
