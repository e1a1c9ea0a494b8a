"""The dashboard address `gridsight up` and `gridsight demo` print.

The local stack's link carries the first chat API key in the URL fragment (`#key=...`): a browser
never sends a fragment to a server, so the key stays out of request logs, and the page moves it into
the tab's session storage and strips it from the address bar on load.
"""

from __future__ import annotations

from urllib.parse import quote

from shared.settings import Settings

__all__ = ["dashboard_url"]


def dashboard_url(settings: Settings, *, host: str = "127.0.0.1", with_key: bool = True) -> str:
    url = f"http://{host}:{settings.chat_port}/dashboard"
    keys = [k.strip() for k in settings.chat_api_keys.get_secret_value().split(",") if k.strip()]
    if with_key and keys:
        url += "#key=" + quote(keys[0], safe="")
    return url
