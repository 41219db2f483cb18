"""Every typed key under which the app and requests keep their state."""

from __future__ import annotations

from aiohttp import web

from .accounting import Accounting
from .api.body import Bodies
from .auth import Keyring
from .cache import ResponseCache
from .context import RequestContext
from .http_client import Pool
from .limits import Limiter
from .metrics import Metrics
from .reload import ConfigStore
from .runtime import ProviderStates
from .usage import UsageBook

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
CONTEXT = web.RequestKey("context", RequestContext)
