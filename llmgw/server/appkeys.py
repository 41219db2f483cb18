"""Every typed key under which the app and requests keep their state."""

from __future__ import annotations

from aiohttp import web

from llmgw.auth.keys import Keyring
from llmgw.auth.sessions import Sessions
from llmgw.budgets.front import Budgets
from llmgw.cache.front import ResponseCache
from llmgw.core import RequestContext
from llmgw.http.client import Pool
from llmgw.limits.front import Limiter
from llmgw.observe.accounting import Accounting
from llmgw.observe.live import LiveStats
from llmgw.observe.metrics import Metrics
from llmgw.observe.tracing import Tracing
from llmgw.observe.usage import UsageBook
from llmgw.routing.state import RoutingState
from llmgw.runtime import ProviderStates
from llmgw.server.body import Bodies
from llmgw.server.reload import ConfigStore
from llmgw.store.engine import Database
from llmgw.store.ledger import Ledger

METRICS = web.AppKey("metrics", Metrics)
ACCOUNTING = web.AppKey("accounting", Accounting)
STORE = web.AppKey("store", ConfigStore)
STATES = web.AppKey("provider_states", ProviderStates)
POOL = web.AppKey("upstream_pool", Pool)
KEYRING = web.AppKey("keyring", Keyring)
LIMITER = web.AppKey("limiter", Limiter)
USAGE = web.AppKey("usage", UsageBook)
CACHE = web.AppKey("cache", ResponseCache)
# True when /metrics has a listener of its own (server.metrics_port, fixed at start).
METRICS_LISTENER = web.AppKey("metrics_listener", bool)
BODIES = web.AppKey("bodies", Bodies)
ROUTING = web.AppKey("routing", RoutingState)  # pools' round-robin, recent decisions
TRACING = web.AppKey("tracing", Tracing)
SESSIONS = web.AppKey("admin_sessions", Sessions)
LIVE = web.AppKey("live_stats", LiveStats)
CONTEXT = web.RequestKey("context", RequestContext)
BUDGETS = web.AppKey("budgets", Budgets)
# The database and its ledger, or None (database.url: '', or no config file).
DATABASE: web.AppKey[Database | None] = web.AppKey("database")
LEDGER: web.AppKey[Ledger | None] = web.AppKey("ledger")
