# One image for every Gatewatch process: the gateway, the collector and the demo upstream.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gatewatch gatewatch
COPY sidecar_gateway sidecar_gateway
COPY collector collector
COPY dashboards dashboards
COPY alerts alerts
COPY traffic traffic
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["gatewatch"]
