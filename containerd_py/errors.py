"""The daemon's small set of typed errors.

Every layer raises one of these; the HTTP layer maps them to a status code
in exactly one place (`api.error_middleware`). Extra keyword arguments become
fields of the JSON error body, so a client can act on them (for example the
current `status` of a container in a 409).
"""


class DaemonError(Exception):
    http_status = 500

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict:
        return {"error": self.message, **self.details}


class InvalidArgument(DaemonError):
    """The request is malformed or names something impossible (400)."""

    http_status = 400


class Forbidden(DaemonError):
    """The caller may not use the daemon (403): not root, not in its group."""

    http_status = 403


class NotFound(DaemonError):
    """A container, process, bundle or checkpoint that does not exist (404)."""

    http_status = 404


class Conflict(DaemonError):
    """An id or name is taken, or the container is in the wrong state (409)."""

    http_status = 409


class Unauthorized(DaemonError):
    """A daemon-to-daemon call without the token issued for it (401)."""

    http_status = 401


class TooLarge(DaemonError):
    http_status = 413


class RuntimeFailure(DaemonError):
    """The OCI runtime, CRIU or the shim failed; carries their own output (500)."""

    http_status = 500


class StorageFull(DaemonError):
    """The daemon cannot record new state: its data or state filesystem is
    full (507). Nothing is started that could not be remembered."""

    http_status = 507


class Unavailable(DaemonError):
    """A capability this host lacks, e.g. CRIU (501)."""

    http_status = 501


class PeerFailure(DaemonError):
    """Another daemon (a migration's target) refused, failed or could not
    be reached; its own status and words are in the body (502)."""

    http_status = 502
