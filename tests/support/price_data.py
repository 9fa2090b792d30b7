"""genai-prices data as its update URL publishes it (a JSON list of providers), made from the copy bundled with the
installed genai-prices with some prices changed, for a FakeAPI on 127.0.0.1 to serve: no test fetches the real one.

    with FakeAPI() as fake:
        url = serve(fake, {('openai', 'gpt-4o'): {'input_mtok': 5, 'output_mtok': 20}})
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import ModelPrice

from tests.support.fake_api import FakeAPI, Reply

PATH = '/pydantic/genai-prices/main/prices/data.json'
# (provider id, model id) -> its new `prices` (None: the model is removed)
Changes = Mapping[tuple[str, str], Mapping[str, Any] | None]


def published(changes: Changes | None = None) -> list[dict[str, Any]]:
    """The bundled data in the published JSON shape; each model named in `changes` gets those prices (the mapping
    that genai-prices' data has under `prices`), or is left out when they are None."""
    providers = _plain(data_snapshot.get_snapshot().providers)
    wanted = dict(changes or {})
    for provider in providers:
        kept = []
        for model in provider['models']:
            key = (provider['id'], model['id'])
            if key in wanted:
                if wanted.pop(key) is None:
                    continue
                model['prices'] = dict(changes[key] or {})  # type: ignore[index]
            kept.append(model)
        provider['models'] = kept
    assert not wanted, f'not in the bundled data: {sorted(wanted)}'
    return providers


def serve(fake: FakeAPI, changes: Changes | None = None, path: str = PATH) -> str:
    """Serve `published(changes)` at `path` of `fake`; its URL."""
    fake.route(path, Reply(raw=json.dumps(published(changes)).encode()))
    return fake.url + path


def _plain(value: Any) -> Any:
    """genai-prices' types as the JSON they are read from: dataclass fields by name (`or_` as `or`), none of the
    unset ones, Decimals as numbers, dates in ISO."""
    if isinstance(value, ModelPrice):
        return {k: _plain(v) for k, v in value.__dict__.items() if not k.startswith('_') and v is not None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip('_'): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.init and not f.name.startswith('_') and getattr(value, f.name) is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return value
