"""TwinPlan application: case model, pipeline, CLI and Qt UI."""

__version__ = "0.1.0"
