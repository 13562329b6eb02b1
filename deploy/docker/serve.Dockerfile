# `gpufleet serve`: every extra (service, analytics, Kubernetes, PostgreSQL, AMD). torch's CPU wheel is
# installed first so pip does not pull a multi-GB CUDA build (as scripts/setup.sh does).
# Not built or run in this project's CI (no container engine there). Build from the repository root:
#   docker build -f deploy/docker/serve.Dockerfile -t gpufleet .
FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-cache-dir ".[all]" && rm -rf /src
WORKDIR /
RUN useradd --uid 10001 --create-home gpufleet && mkdir -p /var/lib/gpufleet && chown gpufleet /var/lib/gpufleet
USER 10001
ENV XDG_DATA_HOME=/var/lib
EXPOSE 8080 19836
ENTRYPOINT ["gpufleet"]
CMD ["serve", "--data-dir", "/var/lib/gpufleet"]
