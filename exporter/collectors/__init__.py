"""One collector per NVML family; each produces neutral samples."""
