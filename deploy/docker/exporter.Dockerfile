# The node exporter: the base install only (no torch / pandas / FastAPI; ~48 MB of Python packages,
# benchmarks/install_size.py). NVML comes from the host driver through the NVIDIA container runtime
# (runtimeClassName: nvidia in deploy/kubernetes/base/exporter.yaml).
# Not built or run in this project's CI (no container engine there). Build from the repository root:
#   docker build -f deploy/docker/exporter.Dockerfile -t gpufleet-exporter .
FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER 65534
EXPOSE 19835
ENTRYPOINT ["gpufleet"]
CMD ["exporter", "--source", "nvml", "--listen", "0.0.0.0:19835"]
