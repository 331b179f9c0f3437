# The image compose.yaml runs: the project installed, `triarb` on PATH.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py MANIFEST.in README.md redis.conf ./
COPY schemas schemas
COPY common common
COPY producers producers
COPY consumers consumers
COPY dashboard dashboard
COPY triarb triarb
RUN pip install --no-cache-dir . && useradd --system triarb && mkdir /data && chown triarb /data
USER triarb
ENTRYPOINT []
