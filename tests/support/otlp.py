"""OTLP exports for tests: an OTLP/JSON export in OTLP's protobuf encoding."""
from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def as_protobuf(export: dict[str, Any]) -> bytes:
    """The same export in OTLP's protobuf encoding (protobuf's JSON mapping takes ids as base64, OTLP/JSON as hex)."""
    copy = json.loads(json.dumps(export))
    for resource_spans in copy['resourceSpans']:
        for scope_spans in resource_spans['scopeSpans']:
            for span in scope_spans['spans']:
                for key in ('traceId', 'spanId', 'parentSpanId'):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    message: bytes = ParseDict(copy, ExportTraceServiceRequest()).SerializeToString()
    return message
