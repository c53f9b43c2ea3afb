# Highway worker / simulator image: `docker build -t highway .` (docker-compose.yml builds it too).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first so that a code change does not reinstall them. The plain package only: the
# `local` extra (moto's server and its cfn-lint, testcontainers) is for the dev stack, not the image.
COPY pyproject.toml README.md ./
COPY highway/__init__.py highway/__init__.py
RUN pip install --upgrade pip && pip install . && pip uninstall --yes highway

COPY core core
COPY highway highway
COPY streams streams
COPY connectors connectors
COPY schemas schemas
COPY bench bench
RUN pip install --no-deps .

RUN useradd --system --uid 10001 --home-dir /var/lib/highway highway \
    && mkdir -p /var/lib/highway \
    && chown highway /var/lib/highway
USER highway
WORKDIR /var/lib/highway
ENV HIGHWAY_STATE_DIR=/var/lib/highway \
    HIGHWAY_HTTP_HOST=0.0.0.0 \
    HIGHWAY_HTTP_PORT=6066

EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=12 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=3)"
ENTRYPOINT ["highway"]
CMD ["worker"]
