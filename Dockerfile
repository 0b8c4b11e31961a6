# syntax=docker/dockerfile:1
# One image for every Stocksync service; the command chooses which one runs:
#   python -m order_ingest serve | python -m stock_ledger serve
#   python -m rule_engine serve  | python -m channel_publisher serve
#   python -m <package> migrate  (apply that service's migrations and exit)
#   python -m stocksync_common.create_topics (create the topics and exit)
# The sandbox marketplaces are in the image too, for the compose demo profile.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stocksync
WORKDIR /src
# Only the packages an image runs; the embedded PostgreSQL and broker stay out.
COPY libs/common libs/common
COPY services services
COPY sandboxes sandboxes
RUN /opt/stocksync/bin/pip install \
        ./libs/common \
        ./services/order-ingest ./services/stock-ledger \
        ./services/rule-engine ./services/channel-publisher ./services/console \
        ./sandboxes \
    # The root file system is read-only at run time: compile now, never at start.
    && /opt/stocksync/bin/python -m compileall -q /opt/stocksync/lib

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="stocksync" \
      org.opencontainers.image.description="Event-driven multichannel stock synchronisation"
RUN groupadd --system --gid 10001 stocksync \
    && useradd --system --uid 10001 --gid stocksync --no-create-home --shell /usr/sbin/nologin stocksync
COPY --from=build /opt/stocksync /opt/stocksync
ENV PATH=/opt/stocksync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    # In a container the API must listen on every interface, on one port for all services.
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness only: readiness (/readyz) depends on PostgreSQL and the broker and is for
# the orchestrator's routing, not for restarting the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}/healthz\", timeout=2)"]
# SIGTERM starts the graceful shutdown (see docs/operations.md); python is PID 1 and
# handles it through uvicorn.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "stock_ledger", "serve"]
