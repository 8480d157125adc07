"""The station's secret token: generated once per process, required by every HTTP request and websocket.

The printed link carries the token as ``?token=...``; the first page load with it also sets an
HttpOnly, SameSite=Strict cookie (named after the port, so stations of several observers on one host
keep apart), which the page's scripts, styles and websocket then send by themselves. Anything without
a matching token gets ``403`` and a fixed sentence: nothing of the study, not even that a study exists.
"""

from __future__ import annotations

import hmac
import secrets

TOKEN_BYTES = 32
REFUSED_TEXT = "403: this reading station opens only with the link it printed when it started."


def new_token() -> str:
    """A URL-safe token with 256 bits from the operating system's CSPRNG."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_matches(given: str | None, token: str) -> bool:
    """Compare in constant time (no timing leak of how much of the token was right)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def cookie_name(port: int) -> str:
    return f"qsmrepro_station_{int(port)}"


def token_middleware(token: str, port: int):
    """An aiohttp middleware that refuses every request without the token (query or cookie)."""
    from aiohttp import web

    name = cookie_name(port)

    @web.middleware
    async def require_token(request, handler):
        from_query = request.query.get("token")
        if not (token_matches(from_query, token) or token_matches(request.cookies.get(name), token)):
            return web.Response(status=403, text=REFUSED_TEXT, headers=_PRIVATE_HEADERS)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the root's redirect to index.html keeps the query (and the token)
            exc.headers.update(_PRIVATE_HEADERS)
            raise
        if isinstance(response, web.StreamResponse) and not response.prepared:
            response.headers.update(_PRIVATE_HEADERS)
            if token_matches(from_query, token) and not token_matches(request.cookies.get(name), token):
                response.set_cookie(name, token, httponly=True, samesite="Strict", path="/")
        return response

    return require_token


# The token is in the page's address: never send it on as a referrer, never keep the page in a cache.
_PRIVATE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
