"""Key files: an Ed25519 seed encrypted at rest with Argon2id and XSalsa20-Poly1305.

The file is JSON so an operator can read which key it holds without the passphrase::

    {"format": "custos-key/1", "public": "<hex>", "label": "...",
     "kdf": {"name": "argon2id", "salt": "<hex>", "ops": 2, "mem": 67108864},
     "sealed": "<hex nonce||ciphertext>"}

The public key is authenticated too: it is checked against the decrypted seed, so a file whose
public key was edited is refused rather than silently signing with a different key.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger.crypto.keys import SigningKey
from ledger.errors import KeyFileError
from ledger.storage.files import write_atomically

FORMAT = "custos-key/1"

#: Argon2id cost for key files people use every day (about a tenth of a second).
INTERACTIVE = (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
#: the cheapest parameters libsodium allows; for throwaway test and devnet keys only.
MINIMAL = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)

_MAX_FILE = 64 * 1024
#: the longest passphrase file read (a passphrase is a line, not a document)
MAX_PASSPHRASE_FILE = 4096


def _derive(passphrase: bytes, salt: bytes, ops: int, mem: int) -> bytes:
    # bounded so that a tampered file cannot stall the machine that opens it
    if not (nacl.pwhash.argon2id.OPSLIMIT_MIN <= ops <= 16):
        raise KeyFileError(f"Argon2id ops limit {ops} out of range")
    if not (nacl.pwhash.argon2id.MEMLIMIT_MIN <= mem <= 1024**3):
        raise KeyFileError(f"Argon2id memory limit {mem} out of range")
    return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=ops, memlimit=mem)


def seal(key: SigningKey, passphrase: bytes, *, label: str = "", cost: tuple[int, int] = INTERACTIVE) -> dict:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    ops, mem = cost
    box = nacl.secret.SecretBox(_derive(passphrase, salt, ops, mem))
    sealed = bytes(box.encrypt(key.seed))
    return {
        "format": FORMAT,
        "public": key.public.hex(),
        "label": label,
        "kdf": {"name": "argon2id", "salt": salt.hex(), "ops": ops, "mem": mem},
        "sealed": sealed.hex(),
    }


def unseal(doc: dict, passphrase: bytes) -> SigningKey:
    try:
        if doc.get("format") != FORMAT:
            raise KeyFileError(f"not a Custos key file (format {doc.get('format')!r})")
        kdf = doc["kdf"]
        if kdf.get("name") != "argon2id":
            raise KeyFileError(f"unsupported key derivation {kdf.get('name')!r}")
        salt = bytes.fromhex(kdf["salt"])
        ops, mem = int(kdf["ops"]), int(kdf["mem"])
        sealed = bytes.fromhex(doc["sealed"])
        public = bytes.fromhex(doc["public"])
    except KeyFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # JSON 1e999 is inf
        raise KeyFileError(f"key file is malformed ({exc})") from None
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise KeyFileError("key file salt has the wrong length")
    box = nacl.secret.SecretBox(_derive(passphrase, salt, ops, mem))
    try:
        seed = box.decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise KeyFileError("wrong passphrase, or the key file was altered") from None
    key = SigningKey(seed)
    if key.public != public:
        raise KeyFileError("the key file's public key does not match its sealed seed")
    return key


def write_key_file(path: str | Path, key: SigningKey, passphrase: bytes, *, label: str = "",
                   cost: tuple[int, int] = INTERACTIVE) -> None:
    """Write atomically with mode 0600; refuse to overwrite an existing key."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} exists; refusing to overwrite a key")
    data = json.dumps(seal(key, passphrase, label=label, cost=cost), indent=2).encode() + b"\n"
    if len(data) > _MAX_FILE:  # every reader would refuse it: never write it
        raise KeyFileError(f"the label is too long: a key file holds at most {_MAX_FILE // 1024} KiB")
    write_atomically(path, data)


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The content of ``path`` if it holds at most ``limit`` bytes (at most ``limit`` + 1 are read:
    /dev/zero or a huge file is refused, not loaded); OSError for a file too large."""
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return raw


def read_passphrase_file(path: str | Path) -> bytes:
    """The passphrase a file holds (its first line's end trimmed); OSError if unreadable or too large."""
    return read_bounded(path, MAX_PASSPHRASE_FILE).rstrip(b"\r\n")


def read_key_doc(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = read_bounded(path, _MAX_FILE)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise KeyFileError(f"{path} is too large to be a key file") from None
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KeyFileError(f"{path} is not a Custos key file (not JSON)") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{path} is not a Custos key file")
    return doc


def load_key_file(path: str | Path, passphrase: bytes) -> SigningKey:
    return unseal(read_key_doc(path), passphrase)


def public_key_of(path: str | Path) -> bytes:
    """The public key a key file declares, without decrypting it."""
    doc = read_key_doc(path)
    try:
        public = bytes.fromhex(doc["public"])
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(f"{path} has no valid public key") from None
    if len(public) != 32:
        raise KeyFileError(f"{path} has no valid public key")
    return public
