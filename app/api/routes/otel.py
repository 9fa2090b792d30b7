"""`POST /v1/traces`: OTLP over HTTP, where OpenTelemetry exporters send spans (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
The GenAI spans among them are recorded as usage events (services/otel). Mounted at the root, not under /api/v1,
because that is the path every exporter appends to OTEL_EXPORTER_OTLP_ENDPOINT.

The same caller as POST /api/v1/usage (an `ingest` token), the same lane (app/api/ingest.py): decoding and recording
run on ingest's own workers, a full queue answers 503 with Retry-After (OTLP exporters send it again). The answer is
in the request's encoding: an ExportTraceServiceResponse whose `partialSuccess` counts the spans refused and says why.
"""
from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from app.api.deps import INGEST, RuntimeDep
from app.api.errors import ValidationErrorOut, refusals
from app.api.ingest import lane, request_size
from services.otel.ingest import Outcome, record_export
from services.otel.otlp import JSON, PROTOBUF

PATH = '/v1/traces'
router = APIRouter(tags=['opentelemetry'])

_BODY: dict[str, Any] = {'requestBody': {'required': True, 'content': {
    PROTOBUF: {'schema': {'type': 'string', 'format': 'binary',
                          'description': 'an OTLP ExportTraceServiceRequest'}},
    JSON: {'schema': {'type': 'object', 'description': 'an OTLP/JSON ExportTraceServiceRequest',
                      'properties': {'resourceSpans': {'type': 'array', 'items': {'type': 'object'}}}}}}}}
_ANSWER = {'description': 'Accepted: an ExportTraceServiceResponse, in the encoding of the request; '
                          '`partialSuccess` counts the spans refused and says why. The header X-SpendGauge-Spans '
                          'counts the spans stored, already recorded, ignored (not LLM calls) and rejected.',
           'content': {PROTOBUF: {'schema': {'type': 'string', 'format': 'binary'}},
                       JSON: {'schema': {'type': 'object', 'properties': {'partialSuccess': {'type': 'object'}}}}}}


_REFUSALS = refusals(
    e400='The body is not an OTLP export (or its compression is not valid)',
    e401='No valid `Authorization: Bearer <token>`, although tokens or users exist',
    e403='The token is not an ingest (or admin) token',
    e413='The body, or what it decompresses to, is too large, or it has too many spans',
    e415='Content-Type is neither application/x-protobuf nor application/json, or the Content-Encoding is neither '
         'gzip nor deflate',
    e503='Ingest is busy: send it again after Retry-After')


@router.post(PATH, dependencies=INGEST, openapi_extra=_BODY, response_class=Response,
             responses={200: _ANSWER, 422: {'model': ValidationErrorOut, 'description': 'A header did not parse'},
                        **_REFUSALS})
async def export_traces(request: Request, rt: RuntimeDep) -> Response:
    """Record the LLM calls among OpenTelemetry spans that follow the GenAI semantic conventions, each once (its
    event id is `<trace id>-<span id>`), as source `otel`. Other spans are ignored; malformed ones are counted in
    `partialSuccess.rejectedSpans` and never refuse the rest."""
    media_type = request.headers.get('content-type', '').split(';')[0].strip().lower()
    ingest = lane()
    ingest.admit(request_size(request))  # refused before its body is read
    body = await request.body()  # its size is capped before this runs (app/api/limits.py)
    outcome = await ingest.run(len(body), record_export, rt.ledger, body, media_type,
                               request.headers.get('content-encoding'))
    headers = {'X-SpendGauge-Spans': outcome.summary}
    if media_type == PROTOBUF:
        return Response(_protobuf_answer(outcome), media_type=PROTOBUF, headers=headers)
    return Response(orjson.dumps(_json_answer(outcome)), media_type=JSON, headers=headers)


def _protobuf_answer(outcome: Outcome) -> bytes:
    if not outcome.rejected:
        return ExportTraceServiceResponse().SerializeToString()
    return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
        rejected_spans=outcome.rejected, error_message=outcome.error_message)).SerializeToString()


def _json_answer(outcome: Outcome) -> dict[str, Any]:
    if not outcome.rejected:
        return {}
    # OTLP/JSON writes 64-bit integers as strings
    return {'partialSuccess': {'rejectedSpans': str(outcome.rejected), 'errorMessage': outcome.error_message}}
