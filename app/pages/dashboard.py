"""The dashboard at `/`: gauge, channel strip, forecast, eco mode, charts, agent and task cards, all pushed live
from the shared dashboard feed."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from nicegui import run, ui

from app import runtime
from app.feed import feed
from app.pages.budget_settings import BudgetSettingsPanel
from app.security.session import can_change, page_actor
from components import charts
from components.agent_detail import DETAIL_DAYS, AgentDetailDialog
from components.cards import AgentCard, CardGrid, PauseDialog, agent_card, last_request_text, task_card
from components.eco import eco_caption, eco_tooltip
from components.forecast import forecast_caption
from components.gauge import budget_gauge, gauge_options
from components.layout import frame, lock
from components.plan import plan_panel
from components.sources import ReconciliationPanel, refusal_lines, source_line
from components.strip import channel_strip_text
from services.alerting.notify import eco_delivery_text
from services.core.errors import DomainError
from services.core.money import usd_to_micros
from services.dashboard import DashboardSnapshot
from services.insights import efficiency
from services.insights.efficiency import EfficiencyOut


@ui.page('/')
async def dashboard_page() -> None:
    data = await feed().current()
    with frame('Dashboard'):
        theme = _dark_mode()
        view = DashboardView(data, dark=theme.value is not False)
    theme.on_value_change(lambda event: view.set_dark(event.value is not False))
    unsubscribe = feed().subscribe(view.update)
    ui.context.client.on_delete(unsubscribe)


def _dark_mode() -> ui.dark_mode:
    """The page's light/dark switch (the frame's): the charts take its colours."""
    return next(e for e in ui.context.client.elements.values() if isinstance(e, ui.dark_mode))


class DashboardView:
    """The page's elements, built once and updated in place from each new feed snapshot."""

    def __init__(self, data: DashboardSnapshot, dark: bool = True) -> None:
        settings = runtime.current().settings
        self.warn_micros = usd_to_micros(settings.agent_warn_usd)
        self.alert_micros = usd_to_micros(settings.agent_alert_usd)
        self.data = data
        self.dark = dark
        self.editable = can_change()
        summary = data.summary
        with ui.element('div').classes('grid grid-cols-1 md:grid-cols-3 gap-4 w-full'):
            with ui.card().classes('items-center'):
                self.gauge = budget_gauge(summary['spent_micros'], summary['limit_micros'], dark)
                self.resets = ui.label().classes('text-caption text-grey').mark('resets-in')
            with ui.card().classes('md:col-span-2 justify-between gap-3'):
                ui.label("Today's spend").classes('text-overline text-grey')
                self.strip = ui.label().classes('text-h6').mark('channel-strip').props('data-testid=channel-strip')
                self.forecast = ui.label().classes('text-subtitle1').mark('forecast')
                self.forecast_band = ui.label().classes('text-caption text-grey').mark('forecast-band')
                self.empty = ui.label('No spend yet today').classes('text-grey').mark('empty-today')
                with ui.column().classes('gap-0'):
                    with ui.row().classes('items-center gap-2'):
                        self.eco = ui.switch('Eco mode', on_change=self._eco_changed).mark('eco-toggle')
                        ui.icon('info_outline', size='xs').classes('text-grey cursor-help') \
                            .tooltip(eco_tooltip(settings.notify.n8n_webhook_url)).mark('eco-help')
                        self.eco_note = ui.label().classes('text-caption text-grey').mark('eco-note')
                    ui.label(eco_caption(settings.notify.n8n_webhook_url)).classes('text-caption text-grey') \
                        .mark('eco-caption')
        with ui.element('div').classes('grid grid-cols-1 md:grid-cols-2 gap-4 w-full'):
            with ui.card():
                ui.label('Spend by agent today').classes('text-overline text-grey')
                self.agent_bars = charts.chart(charts.agent_bars_options(data.by_agent, dark), 'agent-bars')
            with ui.card():
                ui.label('Spend by provider today').classes('text-overline text-grey')
                self.provider_donut = charts.chart(charts.provider_donut_options(data.by_provider, dark),
                                                   'provider-donut')
        with ui.card().classes('w-full'):
            ui.label('Last 30 days').classes('text-overline text-grey')
            history = data.history
            self.history = charts.chart(charts.history_line_options(history['points'],
                                                                    history['daily_limit_micros'], dark),
                                        'history-line')
        with ui.card().classes('w-full gap-2'):
            with ui.row().classes('w-full items-center justify-between'):
                ui.label('Spend sources').classes('text-overline text-grey')
                self.sync_button = ui.button('Sync now', icon='sync', on_click=self._sync_now) \
                    .props('flat dense').mark('sync-now')
            self.sources()
            self.reconciliation = ReconciliationPanel(data.reconciliation)
        with ui.row().classes('items-baseline gap-2'):
            ui.label('Agents').classes('text-h6')
            ui.label('most spent today first, then by name').classes('text-caption text-grey')
        self.pause_dialog = PauseDialog(self._pause_confirmed)
        self.agent_detail = AgentDetailDialog(self._agent_efficiency, lambda: self.dark)
        self.agent_cards = CardGrid('No agents yet')
        self._show_agents()
        self.budget_settings = BudgetSettingsPanel(data, self.editable)
        ui.label('Tasks').classes('text-h6')
        self.task_cards = CardGrid('No tasks yet')
        self._show_tasks()
        with ui.card().classes('w-full gap-2').mark('plan-card'):
            ui.label('Plan for open tasks').classes('text-overline text-grey')
            self.plan()
        self._set_text(data)
        if not self.editable:
            lock(self.eco, self.sync_button)

    def _show_agents(self) -> None:
        """Builds the cards of new agents and of those whose data changed; moves "last request ... ago" on in the
        others."""
        now = datetime.now(UTC)
        self.agent_cards.show([
            (agent['id'], agent,
             partial(agent_card, agent, self.warn_micros, self.alert_micros, now, self._pause_clicked, self.editable,
                     agent['today_cost_micros'], self.agent_detail.show))
            for agent in self.data.agents])
        for agent in self.data.agents:
            card = self.agent_cards.card(agent['id'])
            assert isinstance(card, AgentCard)
            card.last_request.set_text(last_request_text(agent, now))

    @staticmethod
    async def _agent_efficiency(agent_id: str) -> EfficiencyOut | None:
        rt = runtime.current()
        return await run.io_bound(rt.read, efficiency.agent_models, agent_id, rt.settings.zone, DETAIL_DAYS)

    @ui.refreshable_method
    def sources(self) -> None:
        for status in self.data.sync:
            ui.label(source_line(status)).classes('text-body2' if status['configured'] else 'text-body2 text-grey')
        for line in refusal_lines(self.data.refused):
            ui.label(line.text).classes('text-body2 ' + ('text-grey' if line.resolved else 'text-negative')) \
                .mark('token-refused')
        self.sync_button.set_enabled(any(s['configured'] for s in self.data.sync))

    def _show_tasks(self) -> None:
        self.task_cards.show([(task['id'], task, partial(task_card, task)) for task in self.data.tasks])

    @ui.refreshable_method
    def plan(self) -> None:
        plan_panel(self.data.plan)

    def update(self, data: DashboardSnapshot) -> None:
        """Each element is updated only when its data changed (a part the feed did not reload is the very same
        object, which compares equal at once); an agent card only when its agent did, or "last request ... ago"
        moved on (the feed reloads every part at least every clock_s)."""
        old, self.data = self.data, data
        self._draw_charts(old)
        self._set_text(data)
        self.budget_settings.update(data)
        self._show_agents()
        if data.tasks != old.tasks:
            self._show_tasks()
        if data.sync != old.sync or data.refused != old.refused:
            self.sources.refresh()
        if data.plan != old.plan:
            self.plan.refresh()
        if data.reconciliation != old.reconciliation:
            self.reconciliation.show(data.reconciliation)

    def set_dark(self, dark: bool) -> None:
        self.dark = dark
        self._draw_charts()

    def _draw_charts(self, old: DashboardSnapshot | None = None) -> None:
        """The charts whose data changed since `old` (all without it)."""
        data, dark = self.data, self.dark
        summary, history = data.summary, data.history
        if old is None or summary != old.summary:
            _replace(self.gauge, gauge_options(summary['spent_micros'], summary['limit_micros'], dark))
        if old is None or data.by_agent != old.by_agent:
            _replace(self.agent_bars, charts.agent_bars_options(data.by_agent, dark))
        if old is None or data.by_provider != old.by_provider:
            _replace(self.provider_donut, charts.provider_donut_options(data.by_provider, dark))
        if old is None or history != old.history:
            _replace(self.history, charts.history_line_options(history['points'], history['daily_limit_micros'],
                                                               dark))

    def _set_text(self, data: DashboardSnapshot) -> None:
        summary = data.summary
        self.resets.set_text(f'resets in {summary["resets_in"]}')
        self.strip.set_text(channel_strip_text(summary))
        self.forecast.set_text(data.forecast['text'])
        self.forecast_band.set_text(forecast_caption(data.forecast))
        self.empty.set_visibility(summary['requests'] == 0)
        state = data.eco
        self._eco_state = state['eco_mode']
        self.eco.value = state['eco_mode']
        changed = state['changed_at']
        note = f'{"on" if state["eco_mode"] else "off"} since {changed[:16].replace("T", " ")} UTC' if changed \
            else 'never switched'
        delivery = eco_delivery_text(data.eco_delivery)
        self.eco_note.set_text(f'{note} · {delivery}' if delivery else note)

    async def _pause_clicked(self, agent_id: str, paused: bool) -> None:
        """Pausing asks first, naming the agent; resuming does not."""
        if paused:
            self.pause_dialog.ask(agent_id)
        else:
            await self._set_paused(agent_id, False)

    async def _pause_confirmed(self, agent_id: str) -> None:
        await self._set_paused(agent_id, True)

    async def _set_paused(self, agent_id: str, paused: bool) -> None:
        agents = runtime.current().commands.agents
        try:
            await run.io_bound(agents.pause if paused else agents.resume, page_actor(), agent_id, 'dashboard')
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        self.data = replace(self.data, agents=[{**a, 'paused': paused} if a['id'] == agent_id else a
                                               for a in self.data.agents])  # until the feed brings it
        self._show_agents()
        ui.notify(f'{agent_id} {"paused: its checks are blocked" if paused else "resumed"}')

    async def _sync_now(self) -> None:
        self.sync_button.props('loading')
        try:
            runs = await runtime.current().commands.sync.now(page_actor())
        except DomainError as exc:
            ui.notify(str(exc), type='warning')
            return
        finally:
            self.sync_button.props(remove='loading')
        failed = [r['source'] for r in runs if r['status'] != 'ok']
        ui.notify(f'Sync failed for {", ".join(failed)}' if failed else f'Synced {len(runs)} source(s)',
                  type='warning' if failed else 'positive')

    async def _eco_changed(self, event: Any) -> None:
        if event.value == self._eco_state:
            return  # the feed set it, not a person
        self._eco_state = event.value
        try:
            await run.io_bound(runtime.current().commands.eco.switch, page_actor(), event.value, 'dashboard')
        except DomainError as exc:
            self._eco_state = not event.value
            self.eco.value = not event.value  # refused: show what holds
            ui.notify(str(exc), type='warning')
            return
        ui.notify(f'Eco mode {"on" if event.value else "off"}')


def _replace(chart: ui.echart, options: dict[str, Any]) -> None:
    if chart.options == options:
        return
    chart.options.clear()
    chart.options.update(options)
    chart.update()
