"""A cookie jar that keeps nothing, for every HTTP client that serves many merchants.

An `httpx.AsyncClient` stores the cookies its responses set and sends them with every later
request to the same host. A client shared by every merchant (the gateway, the console's API
client, the publisher's calls to a marketplace) would then hand one merchant's session, or a
marketplace's cookie for one seller, to the next caller. These clients pass what their own
caller sent, nothing more.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from urllib.request import Request


class _KeepNothing(DefaultCookiePolicy):
    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


def no_cookies() -> CookieJar:
    """A jar for `httpx.AsyncClient(cookies=...)`: refuses to store or send any cookie."""
    return CookieJar(policy=_KeepNothing())
