"""The MCP tools, defined once for both transports over a BudgetBackend (backend.py). Inputs are typed: check_call
and record_usage take the fields of POST /check and POST /usage, built from the same models and validated by them,
so an agent's call is checked exactly as the REST API checks it. A refused or invalid call is a tool error with a
message (`isError`), never a crash."""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from app import __version__
from app.api.errors import describe_validation
from app.api.routes.check import CheckIn
from app.mcp_server.backend import BudgetBackend, Period, Refused
from services.core.inputs import Label
from services.usage.events import UsageEventIn

BackendFor = Callable[[Context], BudgetBackend]  # the backend serving one call (in the server: the caller's role)
M = TypeVar('M', bound=BaseModel)
ANNOTATED: Any = Annotated  # a type built at run time from a model's field
READS = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
INSTRUCTIONS = ('SpendGauge keeps the LLM budget. Before a costly call, ask check_call (allow / warn / throttle / '
                'block, with the reason); after it, report it with record_usage and an event_id (a repeat is '
                'counted once). get_budget says what is left, get_forecast when the budget runs out, '
                'suggest_cheaper_model what the same calls would cost on other models. Money is integer micro-USD '
                '(*_micros) with an exact USD string beside it (*_usd).')

AgentId = Annotated[Label | None, Field(description='the agent asking (its own policies count too)')]
SessionId = Annotated[Label | None, Field(description='the session (its session policies count too)')]
Project = Annotated[Label | None, Field(description='the project (its project policies count too)')]


def build_server(backend_for: BackendFor) -> MCPServer:
    # log_level: the SDK configures logging only where nothing has (stdio: stderr, warnings only; not per call)
    server: MCPServer = MCPServer('spendgauge', title='SpendGauge budget', instructions=INSTRUCTIONS,
                                  version=__version__, log_level='WARNING')

    async def get_budget(ctx: Context, agent_id: AgentId = None, session_id: SessionId = None,
                         project: Project = None) -> dict[str, Any]:
        return await _answer(backend_for(ctx).remaining(agent_id, session_id, project))

    async def check_call(ctx: Context, **fields: Any) -> dict[str, Any]:
        return await _answer(backend_for(ctx).check(_validated(CheckIn, fields)))

    async def record_usage(ctx: Context, **fields: Any) -> dict[str, Any]:
        return await _answer(backend_for(ctx).record(_validated(UsageEventIn, fields)))

    async def get_forecast(ctx: Context) -> dict[str, Any]:
        return await _answer(backend_for(ctx).forecast())

    async def suggest_cheaper_model(
            ctx: Context, agent_id: Annotated[Label | None, Field(description="only this agent's calls")] = None,
            model: Annotated[Label | None, Field(description='only the calls on this model')] = None,
            period: Annotated[Period, Field(description='the calls of this day, week or month')] = 'day',
    ) -> dict[str, Any]:
        found = await _answer(backend_for(ctx).optimize(agent_id, period))
        return only_model(found, model) if model else found

    server.add_tool(get_budget, annotations=READS, structured_output=False, description=(
        "What is left: today's spend, limit and remaining for the whole day, and for this agent, session and project "
        "the decision a call would get now (allow / warn / throttle / block) with each matched policy's spent, held "
        'and remaining. Needs a read or an ingest token.'))
    server.add_tool(_with_fields(check_call, CheckIn), annotations=READS, structured_output=False, description=(
        'May this call go ahead? Give the model with the expected input/output tokens, or estimated_cost_usd, and '
        'the agent/session/project: allow / warn / throttle / block with the reasons, retry_after_s when throttled, '
        'the remaining per matched policy and the eco-mode flag - the answer of POST /api/v1/check. reserve=true '
        'with event_id holds the estimate until that usage arrives. Needs an ingest token.'))
    server.add_tool(_with_fields(record_usage, UsageEventIn), structured_output=False,
                    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                                open_world_hint=False), description=(
        'Record one LLM call (as POST /api/v1/usage): model, tokens (input_tokens includes cached ones) or '
        'cost_usd, and who made it. Give an event_id: the same event_id again is counted once (status duplicate). '
        'Returns the stored event with cost_micros/cost_usd and cost_source. Needs an ingest token.'))
    server.add_tool(get_forecast, annotations=READS, structured_output=False, description=(
        'When the budget runs out: for today, this week and this month the spend so far, the projection with a '
        'low/high band, the exhaustion ETA (null when it holds), the state and a one-line text - as the dashboard '
        'and GET /api/v1/budget/forecast give it. Needs a read token.'))
    server.add_tool(suggest_cheaper_model, annotations=READS, structured_output=False, description=(
        "Cheaper models for an agent's or a model's calls: the period's calls re-priced on the same provider's "
        'cheaper models and the configured substitutes, the saving per day and per 30-day month, and the share of '
        "calls that fit each candidate's context window (GET /api/v1/optimize). About cost only, never quality. "
        'Needs a read token.'))
    return server


async def _answer(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await call
    except Refused as exc:
        raise ToolError(str(exc)) from None


def _validated(model: type[M], fields: dict[str, Any]) -> M:
    """The arguments as the REST API's model validates them (its cross-field rules included)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise ToolError(describe_validation(exc.errors())) from None


def _with_fields(tool: Callable[..., Awaitable[dict[str, Any]]], model: type[BaseModel]
                 ) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Give `tool(ctx, **fields)` the model's fields as its keyword parameters: the tool's input schema is the
    model's fields, with their types, limits, defaults and descriptions."""
    parameters = [inspect.Parameter('ctx', inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    annotations: dict[str, Any] = {'ctx': Context, 'return': dict[str, Any]}
    for name, field in model.model_fields.items():
        annotation = ANNOTATED[field.annotation, field]
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
        annotations[name] = annotation
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=dict[str, Any])
    tool.__annotations__ = annotations
    return tool


def only_model(found: dict[str, Any], model: str) -> dict[str, Any]:
    """The optimiser's answer kept to the calls on `model`: each agent's entry for it, the agents without it left
    out."""
    agents = [{**agent, 'models': kept} for agent in found['agents']
              if (kept := [m for m in agent['models'] if m['model'] == model])]
    note = found['note'] if agents else f'no calls on {model} in this period; ' + found['note']
    return {**found, 'model': model, 'agents': agents, 'note': note}
