"""Who is asking: the bearer key of a request, compared in constant time, names its tenant.

Keys come from environment variables (``--api-key-env VAR``, repeatable) and live only in this
process's memory; a tenant is named by its variable's name, never by anything derived from the
key, so nothing written to the store can give a key away. With no key configured (a loopback
address only: ``chunkpilot.control.serve.config``) every request is the one tenant ``OPEN_TENANT``.
"""

from __future__ import annotations

import hmac
from typing import Mapping

from chunkpilot.control.serve.objects import ApiError

OPEN_TENANT = "no-key"  # a tenant name no environment variable can have ('-')


def tenant_for(authorization: str | None, keys: Mapping[str, str]) -> str:
    """The tenant whose key ``authorization`` (an ``Authorization`` header) carries; ApiError 401 if
    none does. Every key is compared, whether or not an earlier one matched, so the time taken
    tells nothing about which key or how much of one was right."""
    if not keys:
        return OPEN_TENANT
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "You didn't provide an API key. Pass it as a bearer token: Authorization: Bearer KEY",
                       type="invalid_request_error", code="missing_api_key")
    offered = given.strip().encode()
    found = None
    for tenant, key in keys.items():
        if hmac.compare_digest(offered, key.encode()) and found is None:
            found = tenant
    if found is None:
        raise ApiError(401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key")
    return found
