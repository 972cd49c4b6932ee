"""Pure. The cluster config: frozen model, strict loader, defaults."""

from kagent.config.load import load_config, parse_duration
from kagent.config.model import ClusterConfig

__all__ = ["ClusterConfig", "load_config", "parse_duration"]
