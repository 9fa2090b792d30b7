# SpendGauge: docker build -t spendgauge . && docker run -p 8080:8080 -e SPENDGAUGE_API_TOKENS=$(openssl rand -hex 24) \
#   -e SPENDGAUGE_ADMIN_PASSWORD=<a long password> -e SPENDGAUGE_STORAGE_SECRET=$(openssl rand -hex 32) -v spendgauge-data:/data spendgauge
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPENDGAUGE_DATABASE_URL=sqlite:////data/spendgauge.db \
    SPENDGAUGE_HOST=0.0.0.0 \
    SPENDGAUGE_PORT=8080 \
    NICEGUI_STORAGE_PATH=/data/.nicegui

RUN useradd --create-home --uid 10001 spendgauge \
    && mkdir -p /data && chown spendgauge:spendgauge /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY components ./components
COPY services ./services
COPY assets ./assets
RUN pip install -e '.[postgres]'  # editable: the app serves ./assets from /app

USER spendgauge
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/api/v1/health', timeout=4).status != 200)"
CMD ["spendgauge", "serve", "--host", "0.0.0.0"]
