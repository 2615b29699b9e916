"""Every exception the project raises, under one root, and their HTTP mapping.

``LedgerError`` is the root: ``except LedgerError`` catches every refusal and failure the
ledger reports, on a local data directory or through ``llmring serve``. Each class carries
its HTTP ``status`` and a stable machine ``code`` (the server answers
``{"detail": message, "code": code, …evidence}``), and keeps the builtin base callers
rely on (``except ValueError`` still catches a bad request). Errors carry their evidence
as attributes (``EventValidationError.problems``, ``IdConflictError.event_id``,
``WitnessRefusal.held``/``offered``), sent along in the response body.

The hierarchy (status, code)::

    LedgerError                       503 ledger_error      the ledger cannot serve now
    ├── LedgerLockedError             503 ledger_locked     another process holds it
    ├── ServerUnavailableError        503 server_unavailable   no server answered
    ├── JournalError                  503 journal_error
    ├── JournalDamageError            503 journal_damaged
    ├── StorageFullError              503 storage_full      the disk is full; retry later
    ├── NotWritableError              503 not_writable      a read-only directory or file
    ├── ManifestError                 503 manifest_broken
    │   └── ManifestForkError         503 manifest_fork     another process wrote the record
    ├── KeyRingError                  503 keyring_error
    ├── ConfigError                   503 config_error
    │   └── StorageUriError           400 invalid_storage   a bad or changed storage URI
    ├── ObjectStoreError              503 object_store_unavailable   cannot reach it
    ├── ApiKeyError                   503 api_key_store
    ├── WitnessError                  503 witness_unavailable
    ├── InternalError                 500 internal_error    a server bug (logged)
    ├── AuthenticationError           401 unauthorized
    ├── BudgetExceededError           402 budget_exceeded   a hard budget is spent
    ├── RequestError                  400 bad_request       (ValueError)
    │   ├── InvalidRequestError       422 invalid_request
    │   ├── NotFoundError             404 not_found
    │   ├── MethodNotAllowedError     405 method_not_allowed
    │   ├── RequestTimeoutError       408 request_timeout
    │   ├── RequestTooLargeError      413 too_large
    │   └── UnsupportedMediaTypeError 415 unsupported_media_type
    ├── EventValidationError          422 invalid_event     (ValueError)
    │   └── SpanValidationError       400 invalid_span      an OTLP GenAI span
    ├── IdConflictError               409 id_conflict       (ValueError)
    ├── TenantError                   400 invalid_project   (ValueError)
    ├── ContentError                  422 invalid_content   (ValueError)
    ├── RollupError                   400 invalid_rollup    (ValueError)
    ├── RetentionError                400 invalid_retention (ValueError)
    ├── DimensionNameError            400 invalid_dimension a metadata key or filter
    ├── ReceiptRequestError           400 invalid_receipt_request (ValueError)
    │   ├── NothingToCertifyError     400 nothing_to_certify  an empty selection
    │   └── ReceiptNotFoundError      404 receipt_not_found
    ├── NoteError                     400 invalid_note      (ValueError)
    │   ├── CheckpointError           503 checkpoint_error
    │   ├── CosignatureError          400 invalid_cosignature
    │   └── QuorumError               400 quorum_not_met
    ├── SignatureFormatError          400 invalid_signature (ValueError)
    ├── PublicKeyFormatError          400 invalid_public_key (ValueError)
    ├── ProofError                    400 invalid_proof     (ValueError)
    ├── PolicyError                   400 invalid_policy    (ValueError)
    ├── ConsistencyFormatError        400 invalid_consistency_bundle (ValueError)
    └── TamperEvidence                409 tamper_evidence
        └── WitnessRefusal            409 witness_refusal

The classes are defined here and re-exported by the modules of their concept
(``ledger.model.event.EventValidationError`` is this module's). ``error_body`` is what the
server answers for an error; ``error_from_response`` turns that answer back into the
class the local call raises, so both transports raise the same errors.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """The root of the project's errors: a ledger-level failure the caller can act on
    (locked, corrupt, closed). ``status``: the HTTP status the server answers with;
    ``code``: a stable machine name; ``detail``: the message. ``evidence`` names the
    attributes sent along in the response body."""

    status: int = 503
    code: ClassVar[str] = "ledger_error"
    evidence: ClassVar[tuple[str, ...]] = ()
    request: str = ""  # "METHOD path" of the HTTP request refused, when there was one

    @property
    def detail(self) -> Any:
        """The message (the server's ``detail`` for an error from a response)."""
        return self.args[0] if len(self.args) == 1 else str(self)

    @classmethod
    def from_response(cls, detail: Any, body: dict[str, Any]) -> LedgerError:
        """The error ``detail`` and ``body`` (a response's JSON) describe, with its
        evidence attributes from the body."""
        exc = cls.__new__(cls)
        Exception.__init__(exc, detail)
        for name in cls.evidence:
            setattr(exc, name, body.get(name))
        return exc


# -- the ledger and its files (503: the ledger cannot serve this now) ----------------------
class LedgerLockedError(LedgerError, RuntimeError):
    """Another process holds the data directory's lock."""

    code = "ledger_locked"


class OldLayoutError(LedgerError, RuntimeError):
    """The data directory is in the layout before projects had their own units (one
    journal, manifest and index for all): ``llmring ledger migrate`` converts it."""

    code = "old_layout"

    @classmethod
    def at(cls, root: object) -> OldLayoutError:
        return cls(f"{root} is in the layout of an older version (one journal, manifest and "
                   f"index for every project): convert it with `llmring --data {root} ledger "
                   "migrate` (it verifies the directory before and after)")


OWNER_HEADER = "X-Llmring-Owner"  # a 421's header naming the project owner's URL


class MisdirectedError(LedgerError):
    """A write to a project another server owns (``llmring serve --owns``): ``owner`` is
    that server's URL (None: no owner is recorded), also sent in the
    ``X-Llmring-Owner`` header; clients resend the request there."""

    status = 421
    code = "misdirected"
    evidence = ("project", "owner")

    def __init__(self, project: str, owner: str | None) -> None:
        where = (f"the server at {owner}" if owner else
                 "another server (none is recorded in owners.json)")
        super().__init__(f"project {project!r} is owned by {where}: send its writes there")
        self.project = project
        self.owner = owner


class MigrationError(LedgerError, RuntimeError):
    """``llmring ledger migrate`` refused: the directory (or its conversion) does not
    verify, or there is nothing to migrate; the message says which. Nothing was switched."""

    code = "migration_refused"


class ServerUnavailableError(LedgerError):
    """No server answered (connection refused, timeout, a broken connection)."""

    code = "server_unavailable"


class JournalError(LedgerError, RuntimeError):
    """The journal could not be made durable; the ledger stops accepting writes."""

    code = "journal_error"


class JournalDamageError(LedgerError, RuntimeError):
    """The journal is damaged inside, not merely torn at its end: cutting it at the damage
    would lose acknowledged appends, so the directory is not opened. ``journal`` and
    ``offset`` name the damage (the file relative to the data directory, the byte where
    the first bad frame starts); ``frames_beyond`` and ``events_beyond`` count the intact
    frames and events after it; ``kept`` names the copy kept aside. Nothing else was
    changed."""

    code = "journal_damaged"
    evidence = ("journal", "offset", "frames_beyond", "events_beyond", "kept")

    def __init__(self, journal: str, offset: int, frames_beyond: int, events_beyond: int,
                 kept: str) -> None:
        self.journal = journal
        self.offset = offset
        self.frames_beyond = frames_beyond
        self.events_beyond = events_beyond
        self.kept = kept
        super().__init__(
            f"{journal} is damaged at byte {offset}: cutting it there would drop "
            f"{events_beyond} acknowledged events ({frames_beyond} intact frames) besides "
            f"what the damaged frame holds; a copy is kept as {kept} and nothing else was "
            "changed. Restore the journal from a backup, or accept the loss (`llmring serve "
            "--accept-loss`, `llmring ledger flush --accept-loss`, or Ledger(path, "
            "accept_loss=True)): the journal is then cut at the damage, and `llmring ledger "
            "verify` reports the loss")


class StorageFullError(LedgerError, RuntimeError):
    """The disk holding the data directory is full: the write was refused and nothing of
    it was kept. Writes succeed again once space is freed (no restart)."""

    code = "storage_full"


class NotWritableError(LedgerError, RuntimeError):
    """The data directory, or a file in it, cannot be written (a read-only file system,
    no permission): the message names the path and what is needed."""

    code = "not_writable"

    @classmethod
    def of(cls, exc: BaseException, directory: Any) -> NotWritableError | None:
        """``exc`` (an ``OSError`` or a SQLite error) as this error when it is a refusal
        to write, else None."""
        import errno
        import sqlite3

        if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES,
                                                       errno.EPERM):
            where, why = exc.filename or directory, exc.strerror or str(exc)
        elif isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF
                                                 in (sqlite3.SQLITE_READONLY,
                                                     sqlite3.SQLITE_PERM)):
            where, why = directory, f"the id index: {exc}"
        else:
            return None
        refused = cls(f"cannot write {where} ({why}): this command needs write access "
                      f"to the data directory {directory} and its files (`llmring ledger "
                      "verify` checks a read-only one)")
        refused.__cause__ = exc
        return refused


class ManifestError(LedgerError, RuntimeError):
    """The manifest's chain is broken: the data directory was altered."""

    code = "manifest_broken"


class ManifestForkError(ManifestError):
    """Another process wrote this manifest record on object storage first (two processes
    writing one project through one bucket, or a bucket whose records differ from the
    local manifest): ``where`` is the object, ``ours`` and ``theirs`` the two records'
    lines (``theirs`` None if unreadable). Nothing of the refused change was committed."""

    code = "manifest_fork"
    evidence = ("where", "ours", "theirs")

    def __init__(self, message: str, *, where: str, ours: str, theirs: str | None) -> None:
        super().__init__(message)
        self.where = where
        self.ours = ours
        self.theirs = theirs


class KeyRingError(LedgerError, RuntimeError):
    """The keys directory cannot be used; the message says what to do about it."""

    code = "keyring_error"


class ConfigError(LedgerError, ValueError):
    """The configuration is unreadable or holds an invalid value; the message says which."""

    code = "config_error"


class StorageUriError(ConfigError):
    """A storage URI (``--storage``, ``config.json``) that cannot be used: a bad scheme or
    bucket, a URI given as ``--data``, or one other than the directory's (the storage of
    a data directory is fixed when it is first used). Nothing was written."""

    status = 400
    code = "invalid_storage"


class ObjectStoreError(LedgerError, RuntimeError):
    """The object store holding the segments cannot be reached (endpoint, credentials,
    bucket) or refused a read or write; the message names it."""

    code = "object_store_unavailable"


class ApiKeyError(LedgerError, ValueError):
    """The key store is unreadable, or a request to change it cannot be done; the message
    says what to do."""

    code = "api_key_store"


class WitnessError(LedgerError, RuntimeError):
    """The witness cannot act on a request; the message says what to do."""

    code = "witness_unavailable"


class InternalError(LedgerError):
    """The server failed unexpectedly (a bug): its log has the details, the answer none."""

    status = 500
    code = "internal_error"


# -- requests ------------------------------------------------------------------------------
class AuthenticationError(LedgerError):
    """A missing, unknown or revoked API key."""

    status = 401
    code = "unauthorized"


class BudgetExceededError(LedgerError):
    """A hard budget of the project has spent 100% of its amount this period: the log is
    refused, and nothing is written."""

    status = 402
    code = "budget_exceeded"


class RequestError(LedgerError, ValueError):
    """A request that cannot be served as asked (bad range, bad paging); nothing was
    written."""

    status = 400
    code = "bad_request"


class InvalidRequestError(RequestError):
    """A request whose fields do not have the documented types or bounds; ``errors``
    lists them (``{loc, msg, type}``) when the server's schema refused it."""

    status = 422
    code = "invalid_request"
    evidence = ("errors",)

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFoundError(RequestError):
    """No such thing in this project (another project's ids are not found either)."""

    status = 404
    code = "not_found"


class EntryTooLargeError(NotFoundError):
    """A c2sp.org/tlog-tiles entry bundle that would hold an entry over 65,535 bytes (its
    uint16 length prefix cannot say so): the bundle is not served in that encoding."""

    code = "entry_too_large"


class MethodNotAllowedError(RequestError):
    """A method the path does not take (the answer's ``Allow`` header lists those it
    does)."""

    status = 405
    code = "method_not_allowed"


class RequestTimeoutError(RequestError):
    """A request whose head or body did not arrive within the server's timeout
    (``llmring serve --header-timeout`` / ``--body-timeout``); the server closed the
    connection and did not serve it."""

    status = 408
    code = "request_timeout"


class RequestTooLargeError(RequestError):
    """A request body over the server's limit."""

    status = 413
    code = "too_large"


class UnsupportedMediaTypeError(RequestError):
    """A body in a media type (or content encoding) the route does not take."""

    status = 415
    code = "unsupported_media_type"


# -- events, projects, content, reports ----------------------------------------------------
class EventValidationError(LedgerError, ValueError):
    """An event was refused; ``problems`` lists ``field: what is wrong``, ``index`` is the
    event's position in a batch."""

    status = 422
    code = "invalid_event"
    evidence = ("problems", "index")

    def __init__(self, problems: list[str], *, index: int | None = None) -> None:
        self.problems = problems
        self.index = index
        where = f"event {index}: " if index is not None else ""
        super().__init__(where + "; ".join(problems))


class SpanValidationError(EventValidationError):
    """An OpenTelemetry GenAI span the ledger cannot record (``POST /otlp/v1/traces``):
    400, as OTLP/HTTP answers invalid data; ``where`` names the span, ``index`` is its
    place among the request's spans, ``problems`` name the attributes."""

    status = 400
    code = "invalid_span"
    evidence = ("problems", "index", "where")

    def __init__(self, problems: list[str], *, where: str = "",
                 index: int | None = None) -> None:
        super().__init__(problems, index=index)
        self.where = where
        if where:
            Exception.__init__(self, f"{where}: " + "; ".join(problems))


class IdConflictError(LedgerError, ValueError):
    """An event id was seen before with different content; ``fields`` names where it
    differs."""

    status = 409
    code = "id_conflict"
    evidence = ("event_id", "fields")

    def __init__(self, event_id: str, fields: list[str] | None = None) -> None:
        self.event_id = event_id
        self.fields = fields or []
        detail = f" (differs in: {', '.join(self.fields)})" if self.fields else ""
        super().__init__(
            f"event_id {event_id!r} was already recorded with different content{detail}; "
            "use a new event_id for a new call"
        )


class TenantError(LedgerError, ValueError):
    """An invalid project (tenant) name."""

    status = 400
    code = "invalid_project"


class ContentError(LedgerError, ValueError):
    """Content that cannot be stored (not JSON-serializable, too large)."""

    status = 422
    code = "invalid_content"


class RollupError(LedgerError, ValueError):
    """A usage report that cannot be made (an unknown dimension or time zone)."""

    status = 400
    code = "invalid_rollup"


class DimensionNameError(LedgerError, ValueError):
    """A metadata key that cannot name a dimension, or a malformed metadata filter
    (``ledger.model.dimensions``); each operation answers it as its own refusal."""

    status = 400
    code = "invalid_dimension"


class RetentionError(LedgerError, ValueError):
    """A bad retention request (an unreadable age)."""

    status = 400
    code = "invalid_retention"


# -- receipts ------------------------------------------------------------------------------
class ReceiptRequestError(LedgerError, ValueError):
    """A receipt request that cannot be served (no mode, two modes, bad dates, unknown
    ids, an empty set, bad paging); nothing was written."""

    status = 400
    code = "invalid_receipt_request"


class NothingToCertifyError(ReceiptRequestError):
    """A receipt request whose selection holds no uncertified log (a quiet day for
    ``since_last_receipt``, a range or conversation without logs, a project with no
    logs): nothing was written. Scripts tell "nothing new" from a bad request by its
    ``code``."""

    status = 400
    code = "nothing_to_certify"


class ReceiptNotFoundError(ReceiptRequestError):
    """An unknown receipt (or an event it does not certify)."""

    status = 404
    code = "receipt_not_found"


# -- the transparency log ------------------------------------------------------------------
class NoteError(LedgerError, ValueError):
    """A signed note (or the checkpoint in it) is malformed or does not verify."""

    status = 400
    code = "invalid_note"


class CheckpointError(NoteError):
    """A checkpoint body breaks C2SP tlog-checkpoint, or a checkpoint cannot be issued."""

    status = 503
    code = "checkpoint_error"


class CosignatureError(NoteError):
    """A cosignature (or a cosigner key) is malformed or does not verify."""

    code = "invalid_cosignature"


class QuorumError(NoteError):
    """Fewer witnesses than the policy's quorum validly cosigned the checkpoint."""

    code = "quorum_not_met"


class SignatureFormatError(LedgerError, ValueError):
    """A signature's text is not ``ed25519:`` + base64url of 64 bytes."""

    status = 400
    code = "invalid_signature"


class PublicKeyFormatError(LedgerError, ValueError):
    """A public key (PEM, JSON, vkey) or a private key text is malformed."""

    status = 400
    code = "invalid_public_key"


class ProofError(LedgerError, ValueError):
    """A Merkle proof, or the values it is checked against, failed verification."""

    status = 400
    code = "invalid_proof"


class PolicyError(LedgerError, ValueError):
    """A policy file is malformed; the message names the line."""

    status = 400
    code = "invalid_policy"


class ConsistencyFormatError(LedgerError, ValueError):
    """A consistency bundle is not of the expected shape."""

    status = 400
    code = "invalid_consistency_bundle"


class TamperEvidence(LedgerError):
    """The log does not extend a checkpoint that was signed for it: keep both notes, they
    are the evidence."""

    status = 409
    code = "tamper_evidence"


class WitnessRefusal(TamperEvidence):
    """The offered checkpoint does not extend the one the witness holds: keep both
    (``held``, ``offered``)."""

    code = "witness_refusal"
    evidence = ("held", "offered")

    def __init__(self, message: str, held: str, offered: str) -> None:
        super().__init__(message)
        self.held = held
        self.offered = offered


# -- the mapping ---------------------------------------------------------------------------
ERRORS: tuple[type[LedgerError], ...] = (
    LedgerError, LedgerLockedError, OldLayoutError, MigrationError, MisdirectedError,
    ServerUnavailableError,
    JournalError, ManifestError, ManifestForkError,
    JournalDamageError, StorageFullError, NotWritableError,
    KeyRingError, ConfigError, StorageUriError, ObjectStoreError, ApiKeyError, WitnessError,
    InternalError, AuthenticationError,
    BudgetExceededError,
    RequestError, InvalidRequestError, NotFoundError, EntryTooLargeError,
    MethodNotAllowedError,
    RequestTooLargeError, UnsupportedMediaTypeError, EventValidationError,
    SpanValidationError,
    IdConflictError, TenantError, ContentError, RollupError, RetentionError,
    DimensionNameError,
    ReceiptRequestError, NothingToCertifyError, ReceiptNotFoundError, NoteError,
    CheckpointError, CosignatureError,
    QuorumError, SignatureFormatError, PublicKeyFormatError, ProofError, PolicyError,
    ConsistencyFormatError, TamperEvidence, WitnessRefusal,
    RequestTimeoutError,
)
_BY_CODE: dict[str, type[LedgerError]] = {cls.code: cls for cls in ERRORS}
# An answer without a code (a proxy, an older server): the class of its status.
_BY_STATUS: dict[int, type[LedgerError]] = {
    400: RequestError, 401: AuthenticationError, 402: BudgetExceededError, 404: NotFoundError,
    405: MethodNotAllowedError, 408: RequestTimeoutError, 409: IdConflictError,
    413: RequestTooLargeError, 415: UnsupportedMediaTypeError, 421: MisdirectedError,
    422: InvalidRequestError,
    500: InternalError, 503: LedgerError,
}
UNAVAILABLE_PREFIX = "the ledger cannot serve this now: "


def error_class(code: Any, status: int) -> type[LedgerError]:
    """The class a response's ``code`` names, else the class of its ``status``."""
    if isinstance(code, str) and code in _BY_CODE:
        return _BY_CODE[code]
    return _BY_STATUS.get(status, LedgerError)


def as_ledger_error(exc: BaseException) -> LedgerError | None:
    """``exc`` as the project's error: itself, a builtin ``ValueError`` (a value of the
    request a library refused) as ``RequestError``; None for anything else (a bug)."""
    if isinstance(exc, LedgerError):
        return exc
    if isinstance(exc, ValueError):
        wrapped = RequestError(str(exc))
        wrapped.__cause__ = exc
        return wrapped
    return None


def error_body(exc: LedgerError) -> dict[str, Any]:
    """The JSON body the server answers ``exc`` with: ``{"detail", "code", …evidence}``.
    A 503's detail says the ledger cannot serve the request now."""
    detail = exc.detail
    if exc.status == 503 and isinstance(detail, str):
        detail = UNAVAILABLE_PREFIX + detail
    body: dict[str, Any] = {"detail": detail, "code": exc.code}
    for name in exc.evidence:
        body[name] = getattr(exc, name, None)
    return body


def error_from_response(status: int, body: Any, *, request: str = "") -> LedgerError:
    """The error an HTTP error response stands for: the class its ``code`` names (else
    its status's), with the server's ``detail`` as message, its evidence attributes, and
    ``status`` as answered. ``body`` is the parsed JSON (or the text) of the response;
    ``request`` is ``"METHOD path"``, kept on the error."""
    fields = body if isinstance(body, dict) else {}
    detail = fields.get("detail", body if isinstance(body, str) and body else None)
    if detail is None:
        detail = f"HTTP {status}"
    exc = error_class(fields.get("code"), status).from_response(detail, fields)
    if exc.status != status:
        exc.status = status
    exc.request = request
    return exc


__all__ = [
    "ERRORS",
    "OWNER_HEADER",
    "ApiKeyError",
    "AuthenticationError",
    "BudgetExceededError",
    "CheckpointError",
    "ConfigError",
    "ConsistencyFormatError",
    "ContentError",
    "CosignatureError",
    "DimensionNameError",
    "EntryTooLargeError",
    "EventValidationError",
    "IdConflictError",
    "InternalError",
    "InvalidRequestError",
    "JournalDamageError",
    "JournalError",
    "KeyRingError",
    "LedgerError",
    "LedgerLockedError",
    "ManifestError",
    "ManifestForkError",
    "MethodNotAllowedError",
    "MigrationError",
    "MisdirectedError",
    "NotFoundError",
    "NotWritableError",
    "NoteError",
    "NothingToCertifyError",
    "ObjectStoreError",
    "OldLayoutError",
    "PolicyError",
    "ProofError",
    "PublicKeyFormatError",
    "QuorumError",
    "ReceiptNotFoundError",
    "ReceiptRequestError",
    "RequestError",
    "RequestTooLargeError",
    "RetentionError",
    "RollupError",
    "ServerUnavailableError",
    "SignatureFormatError",
    "StorageFullError",
    "StorageUriError",
    "TamperEvidence",
    "TenantError",
    "WitnessError",
    "WitnessRefusal",
    "as_ledger_error",
    "error_body",
    "error_class",
    "error_from_response",
]
