"""Run configuration: the dataclasses (schema.py), loading YAML and overrides (loading.py), value checks
(checks.py), durations (durations.py). The fully resolved config is saved in the run folder and in every checkpoint."""

from seglab.config.checks import ConfigError, check_choice, validate
from seglab.config.durations import Duration, format_seconds, parse_duration
from seglab.config.loading import expand_dotted, from_dict, load_config, merge, parse_override, read_yaml
from seglab.config.schema import (
    PRESETS_DIR,
    DataConfig,
    EvalConfig,
    ModelConfig,
    PlanConfig,
    RunConfig,
    TrainConfig,
    config_fields,
    preset_path,
    split_names,
)

__all__ = [
    "PRESETS_DIR",
    "ConfigError",
    "DataConfig",
    "Duration",
    "EvalConfig",
    "ModelConfig",
    "PlanConfig",
    "RunConfig",
    "TrainConfig",
    "check_choice",
    "config_fields",
    "expand_dotted",
    "format_seconds",
    "from_dict",
    "load_config",
    "merge",
    "parse_duration",
    "parse_override",
    "preset_path",
    "read_yaml",
    "split_names",
    "validate",
]
