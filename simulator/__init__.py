"""The digital twin: a simulated GPU fleet that is a Source like NVML."""
