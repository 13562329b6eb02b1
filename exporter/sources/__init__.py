"""Device sources: where samples come from (NVML, AMD SMI, the digital twin lives in simulator/)."""
