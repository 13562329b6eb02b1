"""The per-node exporter: sources (NVML, AMD SMI, the digital twin) -> collectors -> Snapshot -> sinks.

Importing this package must stay light: no torch, pandas, statsmodels or scikit-learn.
"""
