"""Any failure below the handlers as the response a client can act on, never a traceback.

A state store that is away is 503 + Retry-After (the client retries); a full disk is 507, also under the
state store (Redis refusing writes it cannot persist); anything else unexpected is logged once with its
traceback and answered 500.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from tuskit import errors

log = logging.getLogger("tuskit.server.core")


def storage_error(exc: OSError) -> errors.TusError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.INSUFFICIENT_STORAGE()
    log.error("storage failure: %s", exc)
    return errors.INTERNAL("storage failure")


def as_tus_error(exc: BaseException, unavailable: tuple[type[BaseException], ...],
                 out_of_space: Callable[[BaseException], bool]) -> errors.TusError:
    """`unavailable`, `out_of_space`: how the state store says "away for now" and "my disk is full"
    (StateStore.unavailable, StateStore.out_of_space)."""
    if isinstance(exc, errors.TusError):
        return exc
    if out_of_space(exc):
        log.warning("upload state store cannot persist, its disk is full: %s", exc)
        return errors.INSUFFICIENT_STORAGE("the upload state store's disk is full")
    if isinstance(exc, unavailable):
        log.warning("redis unavailable: %s", exc)
        return errors.UNAVAILABLE("upload state store (redis) is unavailable; retry later")
    if isinstance(exc, OSError):
        return storage_error(exc)
    log.error("unexpected failure", exc_info=exc)
    return errors.INTERNAL()
