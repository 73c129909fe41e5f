"""Identity providers as the API publishes them (never a secret)."""

from __future__ import annotations

from pydantic import Field

from primage.models import Model


class ProviderInfo(Model):
    name: str
    issuer: str
    client_id: str = Field(description="The public client 'primage login' uses (device flow).")
    scopes: str
    required_groups: list[str]
    login_url: str = Field(description="Where a browser starts the web login.")
