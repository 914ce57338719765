"""Default deployment parameters: one TOML file, deep-merged with caller overrides."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


def load_config(**overrides: Any) -> dict[str, Any]:
    """The defaults with `overrides` merged in (nested dicts merge, other values replace)."""
    with DEFAULTS_FILE.open("rb") as fh:
        config = tomllib.load(fh)
    return deep_merge(config, overrides)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
