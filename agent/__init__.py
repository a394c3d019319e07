"""greenai-agent: per-node energy measurement, attribution and export."""

__version__ = "0.1.0"
