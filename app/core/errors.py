"""The errors a client can cause or see, as domain facts: no HTTP here. Each carries a detail
for the client, optional extra fields, and when relevant when to retry (``retry_after``, seconds)
or where to look (``location``). ``app.core.problems`` maps each to its problem type (status, slug,
title) in one table and renders RFC 9457 bodies."""

from __future__ import annotations

from typing import Any


class MetaserveError(Exception):
    """Base of every error a client can cause or see."""

    def __init__(self, detail: str, *, retry_after: int | None = None, location: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.location = location
        self.extra = extra


class RetryLater(MetaserveError):
    """A refusal that passes: the client may try again after ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)


class UnknownMetaLearner(MetaserveError):
    """No meta-learner (or version, or alias) of that name is served."""


class MetaLearnerVersionRetired(MetaserveError):
    """The version asked for, or the one that adapted a model, is no longer served."""


class AdaptedModelNotFound(MetaserveError):
    """No adapted model of that ID belongs to the caller (or it expired)."""


class InvalidSupportSet(MetaserveError):
    """The support set cannot be adapted on (sizes, targets, their range)."""


class InvalidInputs(MetaserveError):
    """Inputs the meta-learner cannot read (shape, type, range, undecodable media)."""


class InvalidOptions(MetaserveError):
    """Adaptation options that do not apply to this meta-learner."""


class InvalidCursor(MetaserveError):
    """A pagination cursor this service did not issue."""


class LimitExceeded(MetaserveError):
    """A per-meta-learner or per-request limit was exceeded."""


class Unauthorized(MetaserveError):
    """No API key, or one that is unknown or revoked."""


class AdminScopeRequired(MetaserveError):
    """The operation needs an admin-scope API key."""


class PublishCheckFailed(MetaserveError):
    """A version failed a publishing check (manifest, checksum, tensors, smoke test)."""


class CatalogConflict(MetaserveError):
    """The catalog's state does not allow the operation."""


class RateLimited(RetryLater):
    """The key sent more requests than its rate limit allows."""


class TooManyInProgress(RetryLater):
    """The tenant has as many adaptations in progress as it may."""


class TooManyPendingJobs(RetryLater):
    """The tenant has as many queued or running jobs as it may."""


class IdempotencyConflict(MetaserveError):
    """An idempotency key was reused with another body."""


class QuotaExceeded(MetaserveError):
    """The tenant holds as many adapted models as it may."""


class ExamplesNotSupported(MetaserveError):
    """This meta-learner (or this adapted model) cannot add examples exactly."""


class RevisionConflict(MetaserveError):
    """The adapted model changed between the read and the update."""


class Overloaded(RetryLater):
    """The work queues are full."""


class StoreUnavailable(RetryLater):
    """The artifact store did not answer."""


class StoreMismatch(MetaserveError):
    """This server's artifact store is not the one its database is bound to."""


class ArtifactCorrupt(MetaserveError):
    """A stored state failed its checksum; it is never served."""


class StateMissing(MetaserveError):
    """The row exists but its stored state does not (a wrong or unmounted data directory)."""


class ModelNotReady(MetaserveError):
    """Predictions on an adapted model whose adaptation is queued, running or failed."""

    @classmethod
    def for_row(cls, row: Any) -> ModelNotReady:
        where = f"/v1/adapted-models/{row.id}"
        if row.status == "failed":
            reason = (row.error or {}).get("detail", "see the model's error")
            return cls(f"adapted model {row.id} failed to adapt and cannot predict: {reason}; "
                       "create it again", adapted_model_status=row.status)
        return cls(f"adapted model {row.id} is {row.status} (progress {row.progress or 0.0:.0%}); poll "
                   f"GET {where} until its status is ready", retry_after=1, location=where,
                   adapted_model_status=row.status)
