"""An OTLP trace export (ExportTraceServiceRequest) read into plain spans, from either encoding of OTLP over HTTP:
protobuf (`application/x-protobuf`, decoded with opentelemetry-proto) or OTLP/JSON (`application/json`: camelCase
keys, hex trace and span ids, 64-bit integers as strings), optionally gzip- or deflate-compressed.

Bounded: the body decompresses to at most MAX_DECOMPRESSED bytes (a gzip bomb stops there) and carries at most
MAX_SPANS spans. A body that cannot be read at all is refused whole (400); a span that cannot be read is kept as an
unreadable span with its reason, so the rest of the export is still recorded.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from services.core.errors import DomainError

MIB = 2**20
MAX_DECOMPRESSED = 32 * MIB
MAX_SPANS = 10_000  # per export; the OpenTelemetry SDK's batch processor sends at most 512 at a time
PROTOBUF = 'application/x-protobuf'
JSON = 'application/json'
MEDIA_TYPES = (PROTOBUF, JSON)
WBITS = {'gzip': 16 + zlib.MAX_WBITS, 'deflate': zlib.MAX_WBITS}  # the encodings OTLP exporters offer


class UnreadableExport(DomainError):
    status = 400


class ExportTooLarge(DomainError):
    status = 413


class UnsupportedExport(DomainError):
    status = 415


class Composite:
    """An array or key-value list attribute: kept only as 'not a scalar' (no GenAI attribute we read is one)."""

    def __repr__(self) -> str:
        return 'a list or map'


COMPOSITE = Composite()
Scalar = str | bool | int | float | bytes | Composite | None


@dataclass
class Span:
    trace_id: str  # hex, 32 digits
    span_id: str  # hex, 16 digits
    parent_span_id: str  # hex, or '' for a root span
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Scalar]
    resource: dict[str, Scalar]  # the resource's attributes (service.name, ...)
    scope: str  # the instrumentation scope's name
    problem: str | None = None  # set when the span could not be read; then the fields above may be empty

    @property
    def key(self) -> str:
        return f'{self.trace_id}-{self.span_id}'


@dataclass
class Export:
    spans: list[Span] = field(default_factory=list)


def decode(body: bytes, media_type: str, encoding: str | None) -> Export:
    """The export's spans. Raises UnreadableExport (400), ExportTooLarge (413) or UnsupportedExport (415)."""
    if media_type not in MEDIA_TYPES:
        raise UnsupportedExport(f'Content-Type {media_type or "(none)"} is not OTLP: send {PROTOBUF} or {JSON}')
    data = decompressed(body, encoding)
    spans = list(_protobuf_spans(data) if media_type == PROTOBUF else _json_spans(data))
    return Export(spans)


def decompressed(body: bytes, encoding: str | None) -> bytes:
    """The body as sent, or decompressed up to MAX_DECOMPRESSED bytes (several gzip members are read one after
    another, as gzip itself does)."""
    encoding = (encoding or 'identity').strip().lower()
    if encoding == 'identity':
        if len(body) > MAX_DECOMPRESSED:
            raise ExportTooLarge(_too_large())
        return body
    if encoding not in WBITS:
        raise UnsupportedExport(f'Content-Encoding {encoding} is not supported: send gzip, deflate or none')
    out = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(WBITS[encoding])
        pending = rest
        try:
            while pending and not inflater.eof:
                out += inflater.decompress(pending, MAX_DECOMPRESSED + 1 - len(out))
                if len(out) > MAX_DECOMPRESSED:
                    raise ExportTooLarge(_too_large())
                pending = inflater.unconsumed_tail
        except zlib.error as exc:
            raise UnreadableExport(f'the body is not valid {encoding}: {exc}') from None
        if not inflater.eof:
            raise UnreadableExport(f'the body is not valid {encoding}: it ends before the compressed data does')
        rest = inflater.unused_data
    return bytes(out)


def _too_large() -> str:
    return f'the export is larger than {MAX_DECOMPRESSED // MIB} MiB once decompressed'


def _check_count(count: int) -> None:
    if count > MAX_SPANS:
        raise ExportTooLarge(f'the export carries {count:,} spans; at most {MAX_SPANS:,} are taken per request '
                             "(the exporter's batch size, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, is 512 by default)")


# --- protobuf ----------------------------------------------------------------------------------------------------

def _protobuf_spans(data: bytes) -> Iterator[Span]:
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError) as exc:
        raise UnreadableExport(f'the body is not an OTLP protobuf ExportTraceServiceRequest: {exc}') from None
    _check_count(sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans))
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                           span.start_time_unix_nano, span.end_time_unix_nano, _pb_attributes(span.attributes),
                           resource, scope_spans.scope.name,
                           _id_problem(len(span.trace_id) * 2, span.trace_id.hex(), len(span.span_id) * 2,
                                       span.span_id.hex()))


def _pb_attributes(pairs: Any) -> dict[str, Scalar]:
    return {pair.key: _pb_value(pair.value) for pair in pairs}


def _pb_value(value: AnyValue) -> Scalar:
    kind = value.WhichOneof('value')
    if kind is None:
        return None
    if kind in ('array_value', 'kvlist_value'):
        return COMPOSITE
    scalar: Scalar = getattr(value, kind)
    return scalar


# --- JSON --------------------------------------------------------------------------------------------------------

def _json_spans(data: bytes) -> Iterator[Span]:
    payload = _parse_json(data)
    if not isinstance(payload, dict):
        raise UnreadableExport('the body is not an OTLP/JSON ExportTraceServiceRequest: a JSON object is expected')
    resource_list = _list(payload.get('resourceSpans'))
    if resource_list is None:
        raise UnreadableExport('resourceSpans: a list is expected')
    _check_count(sum(len(_list(scope.get('spans')) or ())
                     for rs in resource_list if isinstance(rs, dict)
                     for scope in _list(rs.get('scopeSpans')) or () if isinstance(scope, dict)))
    for r, resource_spans in enumerate(resource_list):
        where = f'resourceSpans[{r}]'
        if not isinstance(resource_spans, dict):
            yield _unreadable(f'{where}: an object is expected')
            continue
        resource_obj = resource_spans.get('resource') or {}
        resource = _json_attributes(resource_obj.get('attributes')) if isinstance(resource_obj, dict) else None
        if resource is None:
            resource = {}
        scopes = _list(resource_spans.get('scopeSpans'))
        if scopes is None:
            yield _unreadable(f'{where}.scopeSpans: a list is expected')
            continue
        for s, scope_spans in enumerate(scopes):
            spans = _list(scope_spans.get('spans')) if isinstance(scope_spans, dict) else None
            if spans is None:
                yield _unreadable(f'{where}.scopeSpans[{s}]: an object with a list of spans is expected')
                continue
            scope = scope_spans.get('scope')
            scope_name = scope.get('name') if isinstance(scope, dict) else None
            for n, span in enumerate(spans):
                yield _json_span(span, resource, scope_name if isinstance(scope_name, str) else '',
                                 f'{where}.scopeSpans[{s}].spans[{n}]')


def _parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses a lone surrogate in any string: the standard parser reads it (that span is then refused)
        return json.loads(data)
    except (ValueError, RecursionError):
        raise UnreadableExport('the body is not valid JSON') from None


def _json_span(span: Any, resource: dict[str, Scalar], scope: str, where: str) -> Span:
    if not isinstance(span, dict):
        return _unreadable(f'{where}: an object is expected')
    trace_id, span_id = span.get('traceId'), span.get('spanId')
    parent = span.get('parentSpanId') or ''
    attributes = _json_attributes(span.get('attributes'))
    start, end = _json_int(span.get('startTimeUnixNano')), _json_int(span.get('endTimeUnixNano'))
    name = span.get('name')
    if not isinstance(trace_id, str) or not isinstance(span_id, str):
        problem: str | None = 'traceId and spanId: hex strings are required'
    elif attributes is None:
        problem = 'attributes: a list of {key, value} objects is expected'
    elif start is None or end is None:
        problem = 'startTimeUnixNano and endTimeUnixNano: integers (or decimal strings) are expected'
    else:
        problem = _id_problem(len(trace_id), trace_id.lower(), len(span_id), span_id.lower())
    if problem:
        return _unreadable(f'{where}: {problem}', str(trace_id or ''), str(span_id or ''))
    assert isinstance(trace_id, str) and isinstance(span_id, str) and attributes is not None
    return Span(trace_id.lower(), span_id.lower(), str(parent).lower(), name if isinstance(name, str) else '',
                start or 0, end or 0, attributes, resource, scope)


def _json_attributes(pairs: Any) -> dict[str, Scalar] | None:
    if pairs is None:
        return {}
    if not isinstance(pairs, list):
        return None
    found: dict[str, Scalar] = {}
    for pair in pairs:
        if not isinstance(pair, dict) or not isinstance(pair.get('key'), str):
            return None
        found[pair['key']] = _json_value(pair.get('value'))
    return found


def _json_value(value: Any) -> Scalar:
    if not isinstance(value, Mapping) or not value:
        return None
    kind, raw = next(iter(value.items()))
    if kind == 'stringValue':
        return raw if isinstance(raw, str) else COMPOSITE
    if kind == 'intValue':
        number = _json_int(raw)
        return COMPOSITE if number is None else number
    if kind == 'boolValue':
        return raw if isinstance(raw, bool) else COMPOSITE
    if kind == 'doubleValue':
        return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else COMPOSITE
    return COMPOSITE  # arrayValue, kvlistValue, bytesValue: not read here


def _json_int(raw: Any) -> int | None:
    """An int64 as OTLP/JSON writes it: a decimal string, or a JSON number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.lstrip('-').isdigit() and len(raw) <= 20:
        return int(raw)
    return None


def _list(value: Any) -> list[Any] | None:
    if value is None:
        return []
    return value if isinstance(value, list) else None


# --- both --------------------------------------------------------------------------------------------------------

_HEX = frozenset('0123456789abcdef')


def _id_problem(trace_len: int, trace_hex: str, span_len: int, span_hex: str) -> str | None:
    if trace_len != 32 or not set(trace_hex) <= _HEX or not trace_hex.strip('0'):
        return 'traceId: 16 bytes (32 hex digits), not all zero, is required'
    if span_len != 16 or not set(span_hex) <= _HEX or not span_hex.strip('0'):
        return 'spanId: 8 bytes (16 hex digits), not all zero, is required'
    return None


def _unreadable(problem: str, trace_id: str = '', span_id: str = '') -> Span:
    return Span(trace_id[:32], span_id[:16], '', '', 0, 0, {}, {}, '', problem)
