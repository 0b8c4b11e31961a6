"""OpenTelemetry traces across every hop: one order is one trace, from the webhook to
every channel's answer.

Off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` turn it off again). Off, nothing is created per event:
`trace_context_of` returns None after one check, consumers do not read record headers,
outbox rows carry NULL, and the FastAPI and httpx instrumentations are not installed.
On, spans are exported over OTLP/HTTP (protobuf) in batches by the SDK, which reads the
standard `OTEL_*` variables itself (headers, timeout, sampler, resource attributes,
batch sizes; docs/configuration.md).

How the W3C trace context travels (the `traceparent` value, carried as text):
- order-ingest: the FastAPI instrumentation's server span of the webhook is current
  while the delivery's outbox rows are written; each row stores it (`outbox.trace_context`).
- the outbox relay sends it as the record's `traceparent` header.
- a consumer starts one span per record that has one, `<topic> process`, a child of it,
  for the handling of its batch (`consuming`). An event the handler writes to the outbox
  takes the span of the consumed event it comes from: the same merchant and causation
  id, else the same merchant, SKU and location (both survive each hop); when a hop
  coalesces several events of one SKU, the last consumed wins, as it does for the data.
- channel-publisher keeps the context on the pending push row, and each push of a
  quantity is a span (`push <channel type>`) child of it, with the channel's answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stocksync_common.contracts import Event

if TYPE_CHECKING:
    from fastapi import FastAPI
    from httpx import AsyncClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

# The record header and outbox column value: a W3C `traceparent`.
TRACEPARENT = "traceparent"
# Paths never traced: probes and scrapes would drown the traces that matter.
UNTRACED_PATHS = "healthz,readyz,metrics,asyncapi"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# Per consumer batch: the span of each consumed event, by what derived events keep of it.
_consumed: contextvars.ContextVar[Mapping[tuple[Any, ...], Span] | None] = contextvars.ContextVar(
    "stocksync_consumed_spans", default=None
)


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, and not switched off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_tracing(service: str) -> bool:
    """Install the OTLP exporter for this process when the environment asks for it;
    return whether tracing is on. The SDK is imported only then."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service instead (the operator's choice).
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("stocksync")
    log.info("tracing on: spans exported over OTLP/HTTP", extra={"service": service})
    return True


def shutdown_tracing() -> None:
    """Export what is buffered (on the way out)."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def instrument_app(app: FastAPI) -> None:
    """A server span per request (the webhook's is the root of an order's trace)."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_PATHS, tracer_provider=_provider)


def instrument_client(client: AsyncClient) -> None:
    """A client span per HTTP call (a channel's API), a child of the current span."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)


def _traceparent(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _parent(traceparent: str) -> Any:
    """The OpenTelemetry context whose remote parent is `traceparent` (an invalid value
    gives an empty context: a new trace, never an error)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def _derived_keys(event: Event) -> list[tuple[Any, ...]]:
    """How an event finds the consumed event's span: itself (a consumed event written on,
    as the publisher's queue does), its causation, its SKU."""
    keys: list[tuple[Any, ...]] = [(event.event_id,), (event.merchant_id, event.causation_id)]
    sku = getattr(event, "sku", None)
    if sku is not None:
        keys.append((event.merchant_id, sku, getattr(event, "location", None)))
    return keys


def trace_context_of(event: Event) -> str | None:
    """The `traceparent` an outbox row of `event` carries: the span of the consumed event
    it derives from, else the current span (a webhook's); None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    consumed = _consumed.get()
    if consumed:
        for key in _derived_keys(event):
            span = consumed.get(key)
            if span is not None:
                return _traceparent(span)
    return _traceparent(trace.get_current_span())


def current_span() -> Span | None:
    """The current span (a webhook's), for work done on its behalf in another task (the
    order-ingest group commit stores many requests' deliveries in one); None when off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return trace.get_current_span()


@contextlib.contextmanager
def derived_from(spans: Mapping[tuple[Any, ...], Span]) -> Iterator[None]:
    """Within the block, `trace_context_of` finds each event's span by its event id
    (`(event_id,)` keys): events written for several requests at once keep their own trace."""
    token = _consumed.set(spans)
    try:
        yield
    finally:
        _consumed.reset(token)


def header_trace_context(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The `traceparent` of a consumed record, when tracing is on and it has one."""
    if _tracer is None or not headers:
        return None
    for name, value in headers:
        if name == TRACEPARENT and value:
            return value.decode("ascii", "replace")
    return None


class Consumed(Protocol):
    """What `consuming` needs of a consumed record (stocksync_common.kafka.ConsumedEvent)."""

    @property
    def topic(self) -> Any: ...
    @property
    def event(self) -> Event: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def trace_context(self) -> str | None: ...


@dataclass
class ConsumedSpans:
    """The spans of one consumer batch, to mark the events that could not be applied."""

    spans: dict[int, Span] = field(default_factory=dict)

    def failed(self, item: Consumed, error: BaseException) -> None:
        span = self.spans.get(id(item))
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))


@contextlib.contextmanager
def consuming(batch: Sequence[Consumed], group: str) -> Iterator[ConsumedSpans]:
    """A `<topic> process` span per record of the batch that carries a trace context,
    open while the batch is handled, and known to `trace_context_of` meanwhile."""
    spans = ConsumedSpans()
    if _tracer is None or not any(item.trace_context for item in batch):
        yield spans
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    by_key: dict[tuple[Any, ...], Span] = {}
    for item in batch:
        if item.trace_context is None:
            continue
        event = item.event
        span = _tracer.start_span(
            f"{item.topic.name} process",
            context=_parent(item.trace_context),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": item.topic.name,
                "messaging.consumer.group.name": group,
                "messaging.destination.partition.id": str(item.partition),
                "messaging.kafka.offset": item.offset,
                "messaging.message.id": str(event.event_id),
                "stocksync.merchant_id": str(event.merchant_id),
                "stocksync.causation_id": event.causation_id,
                "stocksync.event_type": type(event).__name__,
            },
        )
        spans.spans[id(item)] = span
        for key in _derived_keys(event):
            by_key[key] = span  # the last consumed of a key wins, as the hop coalesces
    token = _consumed.set(by_key)
    try:
        yield spans
    except BaseException as exc:
        for span in spans.spans.values():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        _consumed.reset(token)
        for span in spans.spans.values():
            span.end()


class Pushed(Protocol):
    """What `pushing` needs of a quantity about to be sent (a pending push)."""

    @property
    def sku(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def trace_context(self) -> str | None: ...


@dataclass
class PushSpans:
    """One span per quantity of a channel call, ended with the channel's answer."""

    spans: list[Span | None] = field(default_factory=list)

    def answered(self, index: int, status: str, channel_response: str) -> None:
        span = self.spans[index] if index < len(self.spans) else None
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("stocksync.push.status", status)
        span.set_attribute("stocksync.channel.response", channel_response[:500])
        if status == "rejected":
            span.set_status(Status(StatusCode.ERROR, channel_response[:200]))


@contextlib.contextmanager
def pushing(channel_type: str, connection_id: Any, items: Sequence[Pushed]) -> Iterator[PushSpans]:
    """A `push <channel type>` span per quantity sent in one channel call, each a child
    of its own trace; the call itself (httpx's span) runs under the first one."""
    pushed = PushSpans()
    if _tracer is None or not any(item.trace_context for item in items):
        yield pushed
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    for item in items:
        pushed.spans.append(
            None
            if item.trace_context is None
            else _tracer.start_span(
                f"push {channel_type}",
                context=_parent(item.trace_context),
                kind=SpanKind.PRODUCER,
                attributes={
                    "stocksync.channel_type": channel_type,
                    "stocksync.connection_id": str(connection_id),
                    "stocksync.sku": item.sku,
                    "stocksync.location": item.location,
                    "stocksync.quantity": item.quantity,
                    "stocksync.version": item.version,
                    "stocksync.batch_size": len(items),
                },
            )
        )
    first = next(span for span in pushed.spans if span is not None)
    try:
        with trace.use_span(first, end_on_exit=False, record_exception=True, set_status_on_exception=True):
            yield pushed
    finally:
        for span in pushed.spans:
            if span is not None:
                span.end()
