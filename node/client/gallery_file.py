"""The enrolment authority's gallery on disk, sealed under a key derived from its own key.

The gallery (:class:`ledger.biometrics.Gallery`) is encrypted at rest with XSalsa20-Poly1305
under ``HKDF-SHA256(authority seed, info="custos/gallery-key/v1")``: whoever can sign as the
authority can read its gallery, and nobody else. The authority's key file is itself encrypted
at rest (Argon2id), so the gallery needs no second secret. A new authority key means
re-sealing the gallery under it (load with the old key, save with the new).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledger.biometrics import Gallery, GalleryError
from ledger.biometrics.keys import hkdf
from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError

GALLERY_KEY_INFO = b"custos/gallery-key/v1"


class GalleryFileError(CustosError):
    code = "gallery"


def gallery_key(authority: SigningKey) -> bytes:
    return hkdf(authority.seed, GALLERY_KEY_INFO, 32)


@dataclass
class GalleryFile:
    path: Path
    key: bytes
    gallery: Gallery

    @classmethod
    def open(cls, path: Path, authority: SigningKey, *, create: bool = True) -> GalleryFile:
        """Load the gallery at ``path`` (an empty one if the file does not exist and ``create``)."""
        key = gallery_key(authority)
        path = Path(path)
        if not path.exists():
            if not create:
                raise GalleryFileError(f"no gallery at {path}")
            if not path.parent.is_dir():
                raise GalleryFileError(f"cannot create the gallery {path}: no directory {path.parent}")
            return cls(path, key, Gallery())
        try:
            return cls(path, key, Gallery.load(path, key))
        except GalleryError as exc:
            raise GalleryFileError(f"{exc} (is it the gallery of this authority's key?)") from None
        except OSError as exc:
            raise GalleryFileError(f"cannot read the gallery {path}: {exc.strerror}") from None

    def add(self, identity: bytes, enrolled, pseudonym_key: bytes) -> None:
        """Add or replace a child's record and write the gallery back (atomically)."""
        self.gallery.put(identity, enrolled.helper, enrolled.secret, pseudonym_key)
        self.gallery.save(self.path, self.key)
