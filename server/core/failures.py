"""Any failure below the handlers as the response a client can act on, never a traceback.

A state store that is away is 503 + Retry-After (the client retries); a full disk is 507; anything else
unexpected is logged once with its traceback and answered 500.
"""

from __future__ import annotations

import errno
import logging

from tuskit import errors

log = logging.getLogger("tuskit.server.core")


def storage_error(exc: OSError) -> errors.TusError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.INSUFFICIENT_STORAGE()
    log.error("storage failure: %s", exc)
    return errors.INTERNAL("storage failure")


def as_tus_error(exc: BaseException, unavailable: tuple[type[BaseException], ...]) -> errors.TusError:
    """`unavailable`: the state store's exceptions for "away for now" (StateStore.unavailable)."""
    if isinstance(exc, errors.TusError):
        return exc
    if isinstance(exc, unavailable):
        log.warning("redis unavailable: %s", exc)
        return errors.UNAVAILABLE("upload state store (redis) is unavailable; retry later")
    if isinstance(exc, OSError):
        return storage_error(exc)
    log.error("unexpected failure", exc_info=exc)
    return errors.INTERNAL()
