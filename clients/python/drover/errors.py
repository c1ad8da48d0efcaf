"""Exceptions of the drover client.

Every failure of a libdrover call raises a :class:`DroverError` (or a
subclass) whose message is libdrover's reason (``drover_last_error``):

================================  =========================================
exception                         libdrover error
================================  =========================================
:class:`InvalidJob`               ``DROVER_EINVAL``: a job or argument that
                                  is not valid; nothing was sent
:class:`BrokerUnreachable`        ``DROVER_EUNREACHABLE`` (no broker
                                  answered within the timeout) and
                                  ``DROVER_ETIMEOUT`` (answers stopped)
:class:`WaitTimeout`              ``DROVER_ETIMEOUT`` from ``wait``: its own
                                  timeout passed (a BrokerUnreachable)
:class:`Rejected`                 ``DROVER_EREJECTED``: the broker refused;
                                  ``.code`` names its error code
                                  (``"not_found"``, ``"try_again"``, ...)
:class:`DroverError`              ``DROVER_EPROTO``, ``DROVER_ENOMEM``
================================  =========================================
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _lib

#: drover_err_t value -> short stable name, as DroverError.category.
CATEGORIES = {
    _lib.EINVAL: "invalid",
    _lib.EUNREACHABLE: "unreachable",
    _lib.ETIMEOUT: "timeout",
    _lib.EREJECTED: "rejected",
    _lib.EPROTO: "protocol",
    _lib.ENOMEM: "nomem",
}


class DroverError(Exception):
    """A libdrover call failed.

    Attributes:
        err: the drover_err_t value (``drover.errors.CATEGORIES`` has them).
        category: its short name: ``"invalid"``, ``"unreachable"``,
            ``"timeout"``, ``"rejected"``, ``"protocol"`` or ``"nomem"``.
        code: the broker's error code for a refusal (``drover_last_code``:
            ``"not_found"``, ``"invalid_argument"``, ...), else None.
        message: libdrover's one-line reason.
    """

    def __init__(self, message: str, err: int = 0, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.err = err
        self.category = CATEGORIES.get(err, "error")
        self.code = code


class InvalidJob(DroverError):
    """DROVER_EINVAL: the job or an argument is not valid (nothing was sent)."""


class BrokerUnreachable(DroverError):
    """DROVER_EUNREACHABLE / DROVER_ETIMEOUT: no (complete) answer from any
    broker within the client's timeout."""


class WaitTimeout(BrokerUnreachable):
    """``Client.wait`` reached its timeout before every job ended.

    ``results`` holds the results that did arrive (id -> Result)."""

    def __init__(self, message: str, err: int = 0, code: Optional[str] = None,
                 results: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, err, code)
        self.results: Dict[str, Any] = results or {}


class Rejected(DroverError):
    """DROVER_EREJECTED: the broker refused the request; ``.code`` is its
    error code (``drover_last_code``) or None."""


def from_code(err: int, message: str, code: Optional[str] = None) -> DroverError:
    """The exception for a drover_err_t value."""
    if not message:
        message = _lib.strerror(err)
    if err == _lib.EINVAL:
        return InvalidJob(message, err, code)
    if err in (_lib.EUNREACHABLE, _lib.ETIMEOUT):
        return BrokerUnreachable(message, err, code)
    if err == _lib.EREJECTED:
        return Rejected(message, err, code)
    return DroverError(message, err, code)
