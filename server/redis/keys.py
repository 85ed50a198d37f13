"""Every Redis key and channel tuskit uses, in one place: so an operator can see what lives in their Redis,
and two modules can never pick the same name for different things."""

from __future__ import annotations

PREFIX = "tuskit:"

EXPIRY_INDEX = PREFIX + "expiry"  # sorted set: upload id -> expiry (unix seconds) of unfinished uploads
EVENT_STREAM = PREFIX + "events"  # stream of upload events (replayable history)
EVENT_CHANNEL = PREFIX + "events"  # pub/sub channel carrying the same events live
LOCK_PREFIX = PREFIX + "lock:"  # string: an upload's lease token
RELEASE_CHANNEL_PREFIX = PREFIX + "lock-release:"  # pub/sub: "let go of this upload's lease"
UPLOAD_PREFIX = PREFIX + "upload:"
OWNED_PREFIX = PREFIX + "owned:"
FINALS_OF_PREFIX = PREFIX + "finals-of:"  # set: the final uploads that list a partial (see finals_of)


def upload(upload_id: str) -> str:
    """Hash of one upload's state."""
    return UPLOAD_PREFIX + upload_id


def owned(owner: str) -> str:
    """Sorted set: an owner's listed uploads (id -> creation time), for `GET /uploads`; buried ones leave it."""
    return OWNED_PREFIX + owner


def finals_of(partial_id: str) -> str:
    """Set of the final uploads that list this partial."""
    return FINALS_OF_PREFIX + partial_id


def lock(upload_id: str) -> str:
    return LOCK_PREFIX + upload_id


def release_channel(upload_id: str) -> str:
    return RELEASE_CHANNEL_PREFIX + upload_id


def rate_bucket(bucket: str) -> str:
    """Hash of one token bucket (`req:<client>` or `bytes:<client>`)."""
    return PREFIX + "rate:" + bucket
