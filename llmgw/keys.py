"""Every typed key under which the app and requests keep their state."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .context import RequestContext
from .metrics import Metrics
from .reload import ConfigStore
from .runtime import ProviderStates

METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", ConfigStore)
STATES = web.AppKey("provider_states", ProviderStates)
SESSION = web.AppKey("client_session", aiohttp.ClientSession)
CONTEXT = web.RequestKey("context", RequestContext)
