"""Azure OpenAI: OpenAI's wire format at a deployment URL, keyed by ``api-key``.

``{base_url}/openai/deployments/{deployment}/{path}?api-version={api_version}``,
where the model a target names is the deployment's name. Bodies and answers are
OpenAI's, relayed unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from llmgw.config import AzureProvider, ProviderConfig
from llmgw.core import Call, Unsupported, UpstreamRequest
from llmgw.providers.base import OPENAI_PATHS, ProviderType

DEFAULT_API_VERSION = "2024-10-21"


@dataclass(frozen=True)
class Azure(ProviderType):
    default_base_url: str = ""  # every azure provider names its resource (config requires it)

    def needs_key(self, provider: ProviderConfig) -> bool:
        return True  # Azure always wants the resource's key

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        path = OPENAI_PATHS.get(call.endpoint)
        if path is None:
            raise Unsupported(f"{self.name} providers do not serve {call.endpoint}")
        version = provider.api_version if isinstance(provider, AzureProvider) else None
        deployment = quote(model, safe="")
        url = (
            f"{provider.base_url or self.default_base_url}/openai/deployments/{deployment}{path}"
            f"?api-version={quote(version or DEFAULT_API_VERSION, safe='')}"
        )
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["api-key"] = provider.api_key
        return UpstreamRequest("POST", url, headers, call.body_for(model))


AZURE = Azure("azure")
