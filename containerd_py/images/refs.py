"""Image references: parsing, validation and normalisation as containerd
and podman do it (`busybox` is `docker.io/library/busybox:latest`,
`localhost/x:1` stays as it is).

A reference never touches a path: the store keys everything by digest, and
names live inside its JSON records. It is still validated strictly, so a
name the store accepts is one every other tool accepts too.
"""

import re

from ..errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_REPO = "library"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
ID_PREFIX_RE = re.compile(r"^(?:sha256:)?[a-f0-9]{4,64}$")
NAME_MAX = 255


class Reference:
    """A parsed, normalised reference: domain/path, and a tag or a digest."""

    def __init__(self, repo: str, tag: str | None = None, digest: str | None = None):
        self.repo, self.tag, self.digest = repo, tag, digest

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repo}@{self.digest}"
        return f"{self.repo}:{self.tag}"

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"


def parse(ref, field: str = "ref") -> Reference:
    """Parse and normalise `ref`; InvalidArgument naming it when it is not
    a valid image reference."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument(f"{field} must be a non-empty string", field=field)
    bad = InvalidArgument(
        f"invalid image reference {ref!r}: expected [DOMAIN/]NAME[:TAG][@sha256:DIGEST] "
        "with a lowercase name", field=field, ref=ref)
    rest, digest = ref, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not DIGEST_RE.match(digest):
            raise bad
    tag = None
    # A ':' after the last '/' is a tag; one before it is a registry's port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.match(tag):
            raise bad
    m = _NAME_RE.match(rest)
    if not m or len(rest) > NAME_MAX:
        raise bad
    domain, path = m.group(1), m.group(2)
    if domain is None or not ("." in domain or ":" in domain or domain == "localhost"):
        # The first component was not a domain after all (docker's rule).
        if domain is not None:
            path = f"{domain}/{path}"
            if not re.match(rf"^{_COMPONENT}(?:/{_COMPONENT})*$", path):
                raise bad
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_REPO}/{path}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    if digest is not None:
        tag = None  # name:tag@digest means the digest, as containerd reads it
    return Reference(f"{domain}/{path}", tag, digest)


def normalise(ref, field: str = "ref") -> str:
    return str(parse(ref, field))


def looks_like_id(ref: str) -> bool:
    """A full image id, `sha256:ID`, or a unique prefix of at least four hex
    digits (podman and docker accept short ids)."""
    return bool(ID_PREFIX_RE.match(ref))


def check_ref(ref, field: str = "ref") -> str:
    """Validate something that names an image: a reference or an id."""
    if isinstance(ref, str) and looks_like_id(ref):
        return ref
    parse(ref, field)
    return ref
