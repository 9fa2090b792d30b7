"""Live-update latency: from `POST /api/v1/usage` returning to the new value in the DOM of every open dashboard tab,
with 1 and with 20 tabs, beside the round trip of the POST itself measured in the same rounds.

    .venv/bin/python bench/live.py [--rounds 30] [--tabs 1,20] [--timeout 5] [--db PATH] [--burst 50]

What is measured, per tab and round: before the POST, each tab arms a MutationObserver that notes
`performance.timeOrigin + performance.now()` as soon as the channel strip's new text ("... | Total: $X", a value no
tab has shown before) is in the DOM (mutation time, before paint). That page clock is mapped to this process's
`time.time()` by the arming call itself (its round trip bounds the error, printed). The latency is that moment minus
the moment `httpx.post()` returned. Every tab must see every value; a tab that does not within --timeout counts as a
miss. Each POST comes after a quiet spell (`--gap`, by default a little more than the feed's coalesce_s): the first
event after a quiet spell is what the feed reloads at once; an event within the window of the last reload waits for
the window's end (up to coalesce_s more; the burst below is that case).

Then, per scenario, a burst: `--burst` POSTs back to back; the first tab counts the distinct channel-strip texts it
shows until the burst's total is in: the reloads that reached it (one per reload that changed the total).

Starts its own server and Debian's chromium, and stops both at the end: on a new SQLite file in a temporary
directory, or with `--db PATH` on a copy of an existing SQLite database (e.g. the 5M-event history
bench/dataset.py writes to /tmp/sg-bench/sqlite-5m.db; the copy is made with SQLite's backup, PATH is not changed).
Without it, `--history N` first writes N events of the last 30 days into the new database (through the ledger, the
ingest bench's generator, seed 7).

With the tabs of each scenario still open, it then asks the server for each read the API serves (READS: summaries,
the forecast, breakdowns over 30 days, a deep page of the usage listing, every report, reconciliation, history,
listings) and prints the server's resident memory (VmRSS, and its peak VmHWM, from /proc).

Targets: p95 < 300 ms with 20 tabs; the server's RSS < 300 MB with 20 tabs after the reads.
"""
from __future__ import annotations

import argparse
import inspect
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import make_events  # noqa: E402  (bench/ingest.py: this script's folder is on sys.path)
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

from app.feed import DashboardFeed  # noqa: E402
from services.core.db import create_db_engine, upgrade  # noqa: E402
from services.core.display import channel_text  # noqa: E402
from services.live.hub import EventHub  # noqa: E402
from services.usage.ledger import MAX_BATCH, Ledger  # noqa: E402
from services.usage.pricing import Pricer  # noqa: E402
from tests.support.servers import start_server  # noqa: E402

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
COST_MICROS = 50_000  # each round adds $0.05 on the direct channel: a new "Total" every round
TARGET_TABS, TARGET_P95_S = 20, 0.3
TARGET_RSS_MB = 300
# Every kind of read the API serves, as GET (path, params); the usage listing's deep page follows cursors (read_all)
READS: list[tuple[str, dict[str, str]]] = [
    ('/budget/summary', {'period': 'day'}), ('/budget/summary', {'period': 'month'}), ('/budget/forecast', {}),
    ('/budget/by-agent', {'period': 'month'}), ('/budget/by-provider', {'period': 'month'}),
    ('/budget/by-model', {'period': 'month'}), ('/budget/by-channel', {'period': 'month'}),
    ('/budget/history', {'days': '30'}), ('/budget/reconciliation', {'days': '30'}), ('/agents', {}),
    ('/sessions', {}), ('/tasks', {}), ('/alerts', {}), ('/usage', {'limit': '500'}),
    *((f'/reports/{kind}', {'period': 'month'}) for kind in ('summary', 'trend', 'comparison', 'projection')),
]
USAGE_PAGES = 20  # pages of the usage listing followed by cursor

ARM_JS = """(expected) => {
    if (window.__sgObserver) window.__sgObserver.disconnect();
    window.__sgSeen = null;
    const check = () => {
        if (window.__sgSeen === null && document.body.textContent.includes(expected)) {
            window.__sgSeen = performance.timeOrigin + performance.now();
            window.__sgObserver.disconnect();
        }
    };
    window.__sgObserver = new MutationObserver(check);
    window.__sgObserver.observe(document.body, {subtree: true, childList: true, characterData: true});
    check();
    return window.__sgSeen !== null;
}"""
PAGE_CLOCK_JS = '() => performance.timeOrigin + performance.now()'
COUNT_JS = """() => {
    const strip = document.querySelector('[data-testid=channel-strip]');
    window.__sgTexts = new Set([strip.textContent]);
    new MutationObserver(() => window.__sgTexts.add(strip.textContent))
        .observe(strip, {subtree: true, childList: true, characterData: true});
}"""


@dataclass
class Scenario:
    tabs: int
    latencies: list[float] = field(default_factory=list)  # seconds, one per tab and round
    posts: list[float] = field(default_factory=list)  # seconds, one per round
    misses: int = 0
    reconnects: int = 0  # tabs that reloaded (NiceGUI reloads a page whose websocket was lost): waited for, re-armed
    firsts: list[float] = field(default_factory=list)  # per round: the first tab to show the value
    lasts: list[float] = field(default_factory=list)  # per round: the last one
    clock_error: float = 0.0  # the largest error bound of a page clock mapping, seconds
    burst: int = 0  # POSTs in the burst
    burst_s: float = 0.0  # how long they took
    burst_updates: int = 0  # the new channel-strip texts the first tab showed for them: the reloads that reached it
    cpu_per_round: float = 0.0  # the server's CPU (all threads) per round, seconds: what the tabs' updates cost it
    browser_cpu_per_round: float = 0.0  # chromium's, every process: the tabs' own work, on the same cores
    rss_mb: float = 0.0  # the server's resident memory with the tabs open, after every read in READS
    peak_mb: float = 0.0
    reads_s: float = 0.0


def strip_text(litellm: int, direct: int, limit: int | None) -> str:
    """The strip as the page shows it: on the places of the gauge line beside it ("$Z / $limit")."""
    return channel_text(litellm, direct, limit)


def open_tabs(browser: Browser, url: str, count: int) -> list[Page]:
    context = browser.new_context(viewport={'width': 1280, 'height': 800})
    pages = [context.new_page() for _ in range(count)]
    for page in pages:
        page.goto(url, wait_until='commit')
    for page in pages:
        wait_ready(page)
    return pages


def wait_ready(page: Page) -> None:
    page.wait_for_function('window.did_handshake === true', timeout=120_000)  # a large history loads slower
    page.get_by_text('Via LiteLLM:').wait_for(timeout=120_000)


def arm(page: Page, expected: str, result: Scenario) -> tuple[float, float]:
    """Arm the tab's observer for `expected`; its clock offset and error bound."""
    try:
        armed = page.evaluate(ARM_JS, expected)
    except PlaywrightError:  # the tab reloaded: wait for it and arm again
        result.reconnects += 1
        wait_ready(page)
        armed = page.evaluate(ARM_JS, expected)
    if armed:
        raise RuntimeError(f'{expected!r} was on the page before the POST')
    return page_clock_offset(page)


def page_clock_offset(page: Page, samples: int = 3) -> tuple[float, float]:
    """(page clock - our time.time(), in s; its error bound): the tightest of a few calls to the page."""
    best = (0.0, math.inf)
    for _ in range(samples):
        before = time.time()
        page_now = page.evaluate(PAGE_CLOCK_JS) / 1000
        after = time.time()
        if (after - before) / 2 < best[1]:
            best = (page_now - (before + after) / 2, (after - before) / 2)
    return best


def post(client: httpx.Client, event_id: str) -> None:
    response = client.post('/usage', json={'event_id': event_id, 'model': 'gpt-4o', 'channel': 'direct',
                                           'agent_id': 'bench-agent', 'input_tokens': 100, 'output_tokens': 10,
                                           'cost_usd': f'{COST_MICROS / 1e6:.6f}'})
    if response.status_code != 201:
        raise RuntimeError(f'POST /usage answered {response.status_code}: {response.text[:300]}')


def write_history(database_url: str, count: int, days: int = 30) -> None:
    """`count` events spread over the last `days` days, through the ledger (rollups and totals as in use)."""
    engine = create_db_engine(database_url)
    upgrade(engine)
    ledger, rng, now = Ledger(engine, Pricer(), EventHub()), random.Random(7), time.time()
    started = time.perf_counter()
    events = make_events(count, 'history')
    for event in events:
        event['ts'] = datetime.fromtimestamp(now - rng.random() * days * 86_400, UTC).isoformat()
    for i in range(0, count, MAX_BATCH):
        ledger.record_batch(events[i:i + MAX_BATCH])
    engine.dispose()
    print(f'wrote a history of {count:,} events over {days} days in {time.perf_counter() - started:.0f} s')


def run_scenario(pages: list[Page], client: httpx.Client, channels: list[Any], rounds: int, timeout: float,
                 gap: float, warmup: int = 1) -> Scenario:
    result = Scenario(len(pages))
    for number in range(warmup + rounds):
        time.sleep(gap)
        channels[1] += COST_MICROS
        expected = strip_text(*channels)
        offsets = []
        for page in pages:
            offset, error = arm(page, expected, result)
            offsets.append(offset)
            if number >= warmup:
                result.clock_error = max(result.clock_error, error)
        start = time.perf_counter()
        post(client, f'live-{len(pages)}-{number}-{time.time_ns()}')
        returned = time.time()
        post_s = time.perf_counter() - start
        deadline = returned + timeout
        seen_by: list[float] = []
        for page, offset in zip(pages, offsets, strict=True):
            try:
                seen = page.wait_for_function('window.__sgSeen', timeout=max(1.0, deadline - time.time()) * 1000)
            except (PlaywrightTimeout, PlaywrightError):  # this tab never showed the value (or reloaded)
                if number >= warmup:
                    result.misses += 1
                continue
            seen_by.append(seen.json_value() / 1000 - offset - returned)
        if number >= warmup:
            result.posts.append(post_s)
            result.latencies.extend(seen_by)
            if seen_by:
                result.firsts.append(min(seen_by))
                result.lasts.append(max(seen_by))
    return result


def run_burst(result: Scenario, page: Page, client: httpx.Client, channels: list[Any], count: int, gap: float,
              timeout: float) -> None:
    """`count` POSTs back to back; the reloads that reached `page` (its distinct channel-strip texts)."""
    time.sleep(gap)
    page.evaluate(COUNT_JS)
    start = time.perf_counter()
    for number in range(count):
        post(client, f'burst-{result.tabs}-{number}-{time.time_ns()}')
    result.burst, result.burst_s = count, time.perf_counter() - start
    channels[1] += count * COST_MICROS
    try:
        page.wait_for_function('(text) => document.body.textContent.includes(text)', arg=strip_text(*channels),
                               timeout=timeout * 1000)
    except PlaywrightError:
        result.misses += 1  # the burst's total did not show within --timeout: what came until then is counted
    time.sleep(gap)  # a last reload would come by now
    result.burst_updates = page.evaluate('() => window.__sgTexts.size') - 1


def rss_after_reads(client: httpx.Client, pid: int) -> tuple[float, float, float]:
    """Every read in READS (and USAGE_PAGES pages of the usage listing), then the server's (RSS, peak RSS) in MB and
    how long the reads took, in s."""
    started = time.perf_counter()
    for path, params in READS:
        response = client.get(path, params=params, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f'GET {path} answered {response.status_code}: {response.text[:300]}')
    cursor = None
    for _ in range(USAGE_PAGES):
        page = client.get('/usage', params={'limit': '500', **({'cursor': cursor} if cursor else {})}).json()
        cursor = page.get('next_cursor')
        if not cursor:
            break
    took = time.perf_counter() - started
    status = dict(line.split(':', 1) for line in Path(f'/proc/{pid}/status').read_text().splitlines() if ':' in line)
    return int(status['VmRSS'].split()[0]) / 1024, int(status['VmHWM'].split()[0]) / 1024, took


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process, all its threads, from /proc."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def chromium_cpu_seconds() -> float:
    """The CPU of every chromium process on the machine (this bench's browser: nothing else runs one here)."""
    total = 0.0
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            text = stat.read_text()
        except OSError:  # gone
            continue
        if '(chrom' in text.split(')', 1)[0]:
            total += sum(int(v) for v in text.rsplit(')', 1)[1].split()[11:13]) / os.sysconf('SC_CLK_TCK')
    return total


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def tabs(count: int) -> str:
    return f'{count} tab' + ('s' if count != 1 else '')


def row(label: str, samples: int, values: list[float], baseline: list[float] | None = None) -> str:
    p50, p95, top = percentile(values, 50), percentile(values, 95), max(values)
    ratios = (f'{p50 / percentile(baseline, 50):>9.0f}x{p95 / percentile(baseline, 95):>9.0f}x' if baseline
              else f'{"1x":>10}{"1x":>10}')
    return f'  {label:34}{samples:>8}{p50 * 1000:>9.1f} ms{p95 * 1000:>9.1f} ms{top * 1000:>9.1f} ms{ratios}'


def report(scenarios: list[Scenario], rounds: int) -> bool:
    coalesce = inspect.signature(DashboardFeed).parameters['coalesce_s'].default
    print("live-update latency: POST /api/v1/usage returned -> the new channel-strip text in each tab's DOM")
    print(f'  measured in the page (MutationObserver; page clock mapped to ours), {rounds} rounds per scenario after '
          f'1 warm-up round;\n  each POST after a quiet spell; the window of the feed: coalesce_s={coalesce} s')
    print(f'  {"":34}{"samples":>8}{"p50":>12}{"p95":>12}{"max":>12}{"p50/POST":>10}{"p95/POST":>10}')
    ok = True
    for s in scenarios:
        print(row(f'POST round trip ({tabs(s.tabs)} open)', len(s.posts), s.posts))
        if not s.latencies:
            print(f'  {"DOM, " + tabs(s.tabs):34}       0   no tab saw any value ({s.misses} misses)')
            ok = False
            continue
        print(row(f'DOM, {tabs(s.tabs)} (per tab and round)', len(s.latencies), s.latencies, s.posts))
        if s.tabs > 1:
            print(row('  first tab to show it, per round', len(s.firsts), s.firsts, s.posts))
            print(row('  last tab to show it, per round', len(s.lasts), s.lasts, s.posts))
        print(f'  {"":34}misses {s.misses}, reconnects {s.reconnects}, min {min(s.latencies) * 1000:.0f} ms, mean '
              f'{statistics.fmean(s.latencies) * 1000:.0f} ms, clock mapping error <= {s.clock_error * 1000:.1f} ms')
        if s.burst:
            windows = max(1.0, s.burst_s / coalesce)
            print(f'  {"":34}burst of {s.burst} POSTs in {s.burst_s * 1000:.0f} ms: {s.burst_updates} reloads reached '
                  f'the first tab ({s.burst_updates / windows:.1f} per {coalesce} s window of the burst)')
        print(f'  {"":34}CPU per round (a POST, a reload, {tabs(s.tabs)} updated): server '
              f'{s.cpu_per_round * 1000:.0f} ms, chromium {s.browser_cpu_per_round * 1000:.0f} ms '
              f'({os.cpu_count()} CPUs)')
        if s.rss_mb:
            print(f'  {"":34}server memory after every read ({s.reads_s:.1f} s): RSS {s.rss_mb:.0f} MB, '
                  f'peak {s.peak_mb:.0f} MB')
        if s.tabs == TARGET_TABS and s.rss_mb:
            met = s.rss_mb < TARGET_RSS_MB
            ok = ok and met
            print(f'  target: RSS < {TARGET_RSS_MB} MB with {TARGET_TABS} tabs after the reads: '
                  f'{"met" if met else "MISSED"} ({s.rss_mb:.0f} MB)')
        if s.tabs == TARGET_TABS:
            p95 = percentile(s.latencies, 95)
            met = s.misses == 0 and p95 < TARGET_P95_S
            ok = ok and met
            print(f'  target: p95 < {TARGET_P95_S * 1000:.0f} ms with {TARGET_TABS} tabs and every tab sees every '
                  f'value: {"met" if met else "MISSED"} (p95 {p95 * 1000:.0f} ms, {s.misses} misses)')
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--tabs', default=f'1,{TARGET_TABS}', help='comma-separated tab counts')
    parser.add_argument('--timeout', type=float, default=5.0, help='seconds a tab may take to show a value')
    parser.add_argument('--db', type=Path, help='run the server on a copy of this SQLite database')
    parser.add_argument('--history', type=int, default=0, help='without --db: events of history to write first')
    parser.add_argument('--burst', type=int, default=50, help='POSTs in the burst (0: none)')
    coalesce = inspect.signature(DashboardFeed).parameters['coalesce_s'].default
    parser.add_argument('--gap', type=float, default=coalesce + 0.1, help='seconds of quiet before each POST')
    args = parser.parse_args()
    tab_counts = [int(n) for n in args.tabs.split(',')]
    scenarios = []
    with tempfile.TemporaryDirectory() as tmp:
        database_url = None
        if args.db:
            copy = Path(tmp) / 'spendgauge.db'
            with sqlite3.connect(args.db) as source, sqlite3.connect(copy) as target:
                source.backup(target)
            print(f'on a copy of {args.db}: {copy.stat().st_size / 1e6:,.0f} MB')
            database_url = f'sqlite:///{copy}'
        elif args.history:
            database_url = f'sqlite:///{Path(tmp) / "spendgauge.db"}'
            write_history(database_url, args.history)
        server = start_server(Path(tmp), database_url, timeout=300, SPENDGAUGE_LOG_LEVEL='WARNING',
                              SPENDGAUGE_DAILY_LIMIT_USD='100000')
        try:
            with server.client() as client, sync_playwright() as p:
                summary = client.get('/budget/summary', params={'period': 'day'}).json()
                by_channel = summary['by_channel']
                channels = [by_channel['litellm']['spent_micros'], by_channel['direct']['spent_micros'],
                            summary['limit_micros']]
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    for count in tab_counts:
                        pages = open_tabs(browser, server.url + '/', count)
                        try:
                            cpu, browser_cpu = cpu_seconds(server.process.pid), chromium_cpu_seconds()
                            scenario = run_scenario(pages, client, channels, args.rounds, args.timeout, args.gap)
                            scenario.cpu_per_round = (cpu_seconds(server.process.pid) - cpu) / (args.rounds + 1)
                            scenario.browser_cpu_per_round = (chromium_cpu_seconds() - browser_cpu) / (args.rounds + 1)
                            if args.burst:
                                run_burst(scenario, pages[0], client, channels, args.burst, args.gap, args.timeout)
                            scenario.rss_mb, scenario.peak_mb, scenario.reads_s = rss_after_reads(
                                client, server.process.pid)
                            scenarios.append(scenario)
                        finally:
                            pages[0].context.close()
                finally:
                    browser.close()
        finally:
            server.stop()
    ok = report(scenarios, args.rounds)
    print('  targets met' if ok else '  TARGETS MISSED')


if __name__ == '__main__':
    main()
