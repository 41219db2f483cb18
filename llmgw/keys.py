"""Every typed key under which the app and requests keep their state."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .auth import Keyring
from .cache import ResponseCache
from .context import RequestContext
from .limits import Limiter
from .metrics import Metrics
from .reload import ConfigStore
from .runtime import ProviderStates
from .usage import UsageBook

METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ConfigStore)
STATES = web.AppKey("provider_states", ProviderStates)
SESSION = web.AppKey("client_session", aiohttp.ClientSession)
KEYRING = web.AppKey("keyring", Keyring)
LIMITER = web.AppKey("limiter", Limiter)
USAGE = web.AppKey("usage", UsageBook)
CACHE = web.AppKey("cache", ResponseCache)
CONTEXT = web.RequestKey("context", RequestContext)
