"""The biometric error family.

Callers (the transaction rules, the enrolment CLI, the HTTP layer) need to tell three things
apart: the input was not a template at all, the stored helper data is not something this code
wrote, and the scan simply does not unlock the helper data. Everything raised on purpose by
this package derives from :class:`BiometricError`; each member carries a stable ``type`` slug
that an HTTP layer can turn into an RFC 9457 problem ``type``.
"""

from __future__ import annotations

from ledger.errors import CustosError


class BiometricError(CustosError):
    """Base of every error this package raises on purpose."""

    type: str = "biometric-error"

    @property
    def code(self) -> str:  # type: ignore[override]  # the problem slug is the member's type
        return self.type

    def diagnostics(self) -> str:
        """A one-paragraph explanation for an operator, without any template data."""
        return f"{self.type}: {self}"


class InvalidTemplate(BiometricError, ValueError):
    """A template or mask has the wrong length, type or bit values."""

    type = "biometric-invalid-template"


class InvalidSecret(BiometricError, ValueError):
    """The secret to bind is not exactly :data:`SECRET_BYTES` bytes."""

    type = "biometric-invalid-secret"


class MalformedHelperData(BiometricError, ValueError):
    """Serialised helper data is truncated, oversized, non-canonical or has bad fields."""

    type = "biometric-malformed-helper-data"


class UnsupportedHelperVersion(MalformedHelperData):
    """Helper data names a scheme version this code does not implement."""

    type = "biometric-unsupported-helper-version"


class ReproductionFailed(BiometricError):
    """The scan did not unlock the helper data.

    Deliberately one error for three causes that cannot be told apart without the secret: a
    different eye, a scan noisier than the error budget, or helper data that has been altered.
    """

    type = "biometric-reproduction-failed"


class InsufficientOverlap(ReproductionFailed):
    """Too few bits are visible in both the scan and the enrolment to decide: rescan the eye."""

    type = "biometric-insufficient-overlap"


class GalleryError(BiometricError):
    """A gallery file cannot be read: wrong key, corruption, or not a gallery at all."""

    type = "biometric-gallery-error"
