"""Exceptions raised by the pod runner."""

from __future__ import annotations


class UnsupportedPodFeature(ValueError):
    """The manifest uses something the runner does not emulate; running it anyway would test less
    than the manifest says. Raised before anything is started."""

    def __init__(self, path: str, reason: str = "not emulated by podrunner"):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PodStartError(RuntimeError):
    """The pod could not be started the way the kubelet would have started it (a missing Secret key,
    an init container that failed, a container that exited during startup, ...)."""
