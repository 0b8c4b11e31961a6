# syntax=docker/dockerfile:1
# One image for every Stocksync service; the command chooses which one runs:
#   python -m order_ingest serve | python -m stock_ledger serve
#   python -m rule_engine serve  | python -m channel_publisher serve
#   python -m <package> migrate  (apply that service's migrations and exit)
#   python -m <package> wait-for-migrations (the Kubernetes init container)
#   python -m stocksync_common.create_topics (create the topics and exit)
# The default target is the production image: the services only, their dependencies at
# the versions of deploy/image/requirements.lock. The target `sandboxes` is the demo
# image of the sandbox marketplaces (the compose profile "sandboxes").

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stocksync
WORKDIR /src
# The locked dependencies first: this layer is rebuilt only when the lock changes, not
# on every change of the code.
COPY deploy/image/requirements.lock deploy/image/requirements.lock
RUN /opt/stocksync/bin/pip install --no-deps -r deploy/image/requirements.lock
# Then the packages the image runs (the embedded PostgreSQL and broker and the
# sandboxes stay out), without resolving anything again.
COPY libs/common libs/common
COPY services services
RUN /opt/stocksync/bin/pip install --no-deps \
        ./libs/common \
        ./services/order-ingest ./services/stock-ledger \
        ./services/rule-engine ./services/channel-publisher ./services/console \
    && /opt/stocksync/bin/pip check \
    # The root file system is read-only at run time: compile now, never at start.
    && /opt/stocksync/bin/python -m compileall -q /opt/stocksync/lib

FROM build AS build-sandboxes
COPY deploy/image/sandboxes.lock deploy/image/sandboxes.lock
COPY sandboxes sandboxes
RUN /opt/stocksync/bin/pip install --no-deps -r deploy/image/sandboxes.lock \
    && /opt/stocksync/bin/pip install --no-deps ./sandboxes \
    && /opt/stocksync/bin/pip check \
    && /opt/stocksync/bin/python -m compileall -q /opt/stocksync/lib

FROM python:${PYTHON_VERSION}-slim AS base
LABEL org.opencontainers.image.title="stocksync" \
      org.opencontainers.image.description="Event-driven multichannel stock synchronisation"
RUN groupadd --system --gid 10001 stocksync \
    && useradd --system --uid 10001 --gid stocksync --no-create-home --shell /usr/sbin/nologin stocksync
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

FROM base AS sandboxes
COPY --from=build-sandboxes /opt/stocksync /opt/stocksync
CMD ["python", "-m", "stocksync_sandboxes", "shopify", "--host", "0.0.0.0", "--port", "9101"]

# The production image: the last stage, so a plain `docker build .` makes it.
FROM base AS runtime
COPY --from=build /opt/stocksync /opt/stocksync
CMD ["python", "-m", "stock_ledger", "serve"]
