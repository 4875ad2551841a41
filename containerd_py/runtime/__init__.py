"""Running a container: the OCI runtime's command lines (oci.py), the root
filesystems the daemon mounts for it (rootfs.py), and the runtime spec the
daemon writes from a bundle or an image plus the create settings (spec.py,
settings.py), with the runtime's start failures sorted into the user's
mistakes and its own (failures.py)."""

from .oci import SUPPORTED, OCIRuntime

__all__ = ["SUPPORTED", "OCIRuntime"]
