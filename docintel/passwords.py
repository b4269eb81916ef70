"""PDF passwords kept with their document, never in clear.

A client sends ``password`` with its options (``docintel process --password``,
the API's ``password`` field). It is encrypted with Fernet under
``DOCINTEL_SECRET_KEY`` before the document is stored, kept in the document's
options as ``password_encrypted``, and decrypted only where the PDF is opened.
Every process that opens documents must therefore share the key. Embedded mode,
one process on one machine, makes its own key in the data directory on first use.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from docintel.errors import DocumentError, ErrorCode
from docintel.settings import Settings

PASSWORD_OPTION = "password"  # what a client sends
SEALED_OPTION = "password_encrypted"  # what the document keeps
KEY_FILE = "secret.key"
_MAKE_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SecretKeyError(RuntimeError):
    """No usable DOCINTEL_SECRET_KEY where a password has to be encrypted or decrypted."""


def seal_options(settings: Settings, options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` with a clear ``password`` replaced by its encrypted form."""
    options = dict(options or {})
    password = options.pop(PASSWORD_OPTION, None)
    if password:
        token = _fernet(settings).encrypt(str(password).encode("utf-8"))
        options[SEALED_OPTION] = token.decode("ascii")
    return options


def document_password(settings: Settings, options: dict[str, Any]) -> str | None:
    """The clear password a document was submitted with, if any.

    Raises ``DocumentError`` (``encrypted``) when this process cannot decrypt it:
    the document then fails with a message saying why, as for a wrong password.
    """
    token = options.get(SEALED_OPTION)
    if not token:
        return None
    try:
        return _fernet(settings).decrypt(str(token).encode("ascii")).decode("utf-8")
    except SecretKeyError as error:
        message = f"cannot decrypt the PDF's password: {error}"
        raise DocumentError(ErrorCode.ENCRYPTED, message) from None
    except InvalidToken:
        raise DocumentError(
            ErrorCode.ENCRYPTED,
            "cannot decrypt the PDF's password: DOCINTEL_SECRET_KEY is not the key it was "
            "submitted with",
        ) from None


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` fit to show or compare: whether a password was given, never the password."""
    return {k: v for k, v in options.items() if k not in (PASSWORD_OPTION, SEALED_OPTION)}


def has_password(options: dict[str, Any]) -> bool:
    return bool(options.get(PASSWORD_OPTION) or options.get(SEALED_OPTION))


def _fernet(settings: Settings) -> Fernet:
    configured = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if configured:
        key = configured.encode("ascii", errors="replace")
    elif settings.embedded:
        key = _embedded_key(settings)
    else:
        raise SecretKeyError(
            "PDF passwords need DOCINTEL_SECRET_KEY, the same on every docintel process; "
            f"make one with {_MAKE_KEY}"
        )
    try:
        return Fernet(key)
    except ValueError:
        raise SecretKeyError(
            f"DOCINTEL_SECRET_KEY is not a Fernet key; make one with {_MAKE_KEY}"
        ) from None


def _embedded_key(settings: Settings) -> bytes:
    """The key in the data directory, made on first use, readable by its owner only."""
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a second
        # process never reads half a key, and the first one to link wins.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(handle, "wb") as key_file:
                key_file.write(Fernet.generate_key())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_bytes().strip()
