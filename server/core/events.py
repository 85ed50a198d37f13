"""Kinds of upload event, one per state change; what carries them (a Redis stream) is a port's business."""

from __future__ import annotations

CREATED = "created"
PROGRESS = "progress"
FINISHED = "finished"
VERIFIED = "verified"
VERIFICATION_FAILED = "verification-failed"
PROCESSED = "processed"
TERMINATED = "terminated"
EXPIRED = "expired"
