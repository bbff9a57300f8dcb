"""Run configuration: one typed tree that a YAML file, dotted overrides and CLI flags all set.

Why one tree: every verb (``teacher train``, ``distill``, ``search``, ``demo`` ...) reads the same sections, so a
YAML written for ``search`` also drives ``distill``, and the resolved tree saved in the run directory says exactly what
ran. Precedence, lowest first: defaults < YAML file < CLI flags < ``key.sub=value`` overrides. An unknown key is a user
error that names the closest valid key.

The package: ``schema`` (the dataclasses; each field's default, help, range and registry declared with
``fields.opt``, each closed choice a ``Literal``), ``load`` (resolution, type conversion, range and registry checks),
``yamlio`` (safe YAML reading) and ``describe`` (every key with type, default, range and help, for
``archkd config --keys`` and the docs).
"""
from archkd.config.describe import KeyDoc, describe_fields, describe_keys
from archkd.config.fields import Bounds, field_bounds, field_help, field_registry, literal_choices, opt
from archkd.config.load import (PRESET_SOURCES, REGISTRY_CHOICES, all_keys, check_choices, check_ranges, load_config,
                                method_presets, parse_overrides, register_choices, register_presets, save_config,
                                set_key, to_dict)
from archkd.config.schema import (AugmentConfig, BudgetConfig, Config, DataConfig, DistillConfig, ExportConfig,
                                  ExportFormat, FeatureLossConfig, GenericConfig, MeasureConfig, Normalization,
                                  ObjectiveName, OnnxExporter, PrescreenConfig, ProcessConfig, Pruner, RewardMetric, SearchConfig,
                                  StudentConfig, TeacherConfig, TRAIN_OUTPUT_ONLY, TrainConfig, recipe_identity)
from archkd.config.yamlio import YAML_ALIAS_EXPANSION, load_yaml, read_yaml

__all__ = [
    "AugmentConfig", "BudgetConfig", "Config", "DataConfig", "DistillConfig", "ExportConfig", "FeatureLossConfig",
    "GenericConfig", "MeasureConfig", "PrescreenConfig", "ProcessConfig", "SearchConfig", "StudentConfig",
    "TeacherConfig", "TrainConfig", "recipe_identity", "TRAIN_OUTPUT_ONLY",
    "ExportFormat", "Normalization", "ObjectiveName", "OnnxExporter", "Pruner", "RewardMetric",
    "Bounds", "opt", "field_bounds", "field_help", "field_registry", "literal_choices",
    "all_keys", "set_key", "parse_overrides", "load_config", "check_ranges", "check_choices", "register_choices",
    "REGISTRY_CHOICES", "register_presets", "PRESET_SOURCES", "method_presets", "to_dict", "save_config",
    "YAML_ALIAS_EXPANSION", "load_yaml", "read_yaml",
    "KeyDoc", "describe_fields", "describe_keys",
]
