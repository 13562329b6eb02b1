"""gpufleet: the application (CLI, settings, the serve daemon, the API)."""

__version__ = "0.1.0"
