"""OpenTelemetry GenAI ingest: OTLP trace exports (`POST /v1/traces`, protobuf or JSON, gzip or not) read into spans
(`otlp`), and the spans that are LLM calls mapped to usage events for the ledger (`genai`).

Server side: it imports opentelemetry-proto, so it does not live in services/integrations (the client package that
runs inside other processes with httpx and the standard library only).
"""
