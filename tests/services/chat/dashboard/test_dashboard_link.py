"""The link `gridsight up` prints opens a signed-in dashboard without sending the key to a server."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from services.chat.dashboard.link import dashboard_url


def test_link_points_at_the_chat_port_and_carries_the_key_in_the_fragment(settings):
    url = urlsplit(dashboard_url(settings.model_copy(update={"chat_port": 9123})))
    assert (url.scheme, url.netloc, url.path, url.query) == ("http", "127.0.0.1:9123", "/dashboard", "")
    assert url.fragment == "key=local-dev-chat-key"


def test_link_uses_the_first_key_quoted_and_can_leave_it_out(settings):
    two = settings.model_copy(update={"chat_api_keys": SecretStr(" a&b=c , second")})
    assert dashboard_url(two).endswith("/dashboard#key=a%26b%3Dc")
    assert dashboard_url(two, with_key=False).endswith("/dashboard")
