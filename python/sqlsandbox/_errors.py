"""The exceptions sqlsandbox raises, one class per error of the library.

Every exception carries the library's stable code (``.code``, e.g.
``"SB303"``), its message (``.message``), whether the input was understood
and refused (``.refusal``: the command line's exit code 1) or was bad input
(exit code 2), and the error's fields (``.details``, also readable as
attributes: ``err.table``, ``err.column``...).

Classes group the codes by family, so that a service can catch what it
handles alike::

    SqlsandboxError
    ├── PolicyError              SB0xx  the policy (or a file) is bad
    ├── InputError               SB1xx  the query or the principal is bad
    └── Refused                         understood, and refused
        ├── AccessDenied         SB2xx  permissions
        ├── AttributeRefused     SB3xx  attributes, variables, hidden columns
        ├── QueryRefused         SB4xx  what the query does or contains
        └── VerificationFailed   SB901  the independent check (a bug)
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = [
    "SqlsandboxError",
    "PolicyError",
    "PolicySyntaxError",
    "InvalidPolicy",
    "PolicyFileError",
    "TestFileError",
    "PolicyEditError",
    "InputError",
    "ParseError",
    "UnknownName",
    "UnknownUser",
    "UnknownGroup",
    "UnknownDatabase",
    "UnknownQuestion",
    "DatabaseRequired",
    "BuilderError",
    "Refused",
    "AccessDenied",
    "NativeSqlDenied",
    "SandboxConflict",
    "RoutingRefused",
    "ImpersonationRefused",
    "WriteDenied",
    "QueryCreationDenied",
    "AttributeRefused",
    "MissingAttribute",
    "AttributeTypeError",
    "HiddenColumn",
    "MissingVariable",
    "QueryRefused",
    "NotReadOnly",
    "ForbiddenFunction",
    "Unsupported",
    "LimitExceeded",
    "VerificationFailed",
    "ERROR_CLASSES",
]


class SqlsandboxError(Exception):
    """Any error sqlsandbox reports; ``code`` is stable (``SB`` + 3 digits)."""

    code: str
    message: str
    refusal: bool
    details: Dict[str, Any]

    def __init__(
        self,
        message: str,
        code: Optional[str] = None,
        *,
        refusal: Optional[bool] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else _default_code(type(self))
        self.refusal = refusal if refusal is not None else issubclass(type(self), Refused)
        self.details = dict(details or {})

    @property
    def location(self) -> Optional[Dict[str, Any]]:
        """For policy errors: ``{"file", "line", "column", "key"}``."""
        loc = self.details.get("location")
        return loc if isinstance(loc, dict) else None

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found otherwise: the error's fields.
        details = self.__dict__.get("details")
        if details is not None and name in details:
            return details[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.code!r})"

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (type(self), self.message, self.code, self.refusal, self.details),
        )

    def to_dict(self) -> Dict[str, Any]:
        """``{"code", "message"}`` as ``sqlsandbox --format json`` reports it."""
        return {"code": self.code, "message": self.message}


def _rebuild(cls: type, message: str, code: str, refusal: bool, details: Dict[str, Any]) -> Any:
    return cls(message, code, refusal=refusal, details=details)


# --- SB0xx: the policy ------------------------------------------------------


class PolicyError(SqlsandboxError):
    """The policy (or a file sqlsandbox reads) is bad: SB001-SB005."""


class PolicySyntaxError(PolicyError):
    """SB001: the policy is not valid YAML or does not match its schema."""


class InvalidPolicy(PolicyError):
    """SB002: the policy parsed but is inconsistent."""


class PolicyFileError(PolicyError):
    """SB003: a file cannot be read (``.path``)."""


class TestFileError(PolicyError):
    """SB004: a policy test file is malformed."""

    __test__ = False  # not a pytest test class


class PolicyEditError(PolicyError):
    """SB005: a policy edit was refused; the file was left as it was."""


# --- SB1xx: bad input -------------------------------------------------------


class InputError(SqlsandboxError):
    """The query, question or principal is malformed or unknown: SB101-SB104."""


class ParseError(InputError):
    """SB101: the SQL does not parse in the dialect (``.dialect``)."""


class UnknownName(InputError):
    """SB102: an unknown user, group, database, question, API key, dialect...

    ``.kind`` says which, ``.name`` the name.
    """


class UnknownUser(UnknownName):
    """SB102 for a user the policy does not declare."""


class UnknownGroup(UnknownName):
    """SB102 for a group the policy does not declare."""


class UnknownDatabase(UnknownName):
    """SB102 for a database the policy does not declare."""


class UnknownQuestion(UnknownName):
    """SB102 for a saved question the policy does not declare."""


class DatabaseRequired(InputError):
    """SB103: the policy declares several databases and none was named."""


class BuilderError(InputError):
    """SB104: a malformed query-builder question (``.path`` is its JSON path)."""


# --- refusals ---------------------------------------------------------------


class Refused(SqlsandboxError):
    """The input was understood and refused (CLI exit code 1)."""


class AccessDenied(Refused):
    """SB2xx; SB201 itself: the principal may not read a table or database."""


class NativeSqlDenied(AccessDenied):
    """SB202: no native SQL permission on the database."""


class SandboxConflict(AccessDenied):
    """SB203: two groups sandbox the same table differently."""


class RoutingRefused(AccessDenied):
    """SB204: database routing refused the principal."""


class ImpersonationRefused(AccessDenied):
    """SB205: connection impersonation refused the principal."""


class WriteDenied(AccessDenied):
    """SB206: no write rule lets the principal run this command."""


class QueryCreationDenied(AccessDenied):
    """SB207: the principal may not create query-builder questions there."""


class AttributeRefused(Refused):
    """SB3xx: a missing or ill-typed attribute or variable, a hidden column."""


class MissingAttribute(AttributeRefused):
    """SB301: a sandbox needs an attribute the principal does not have."""


class AttributeTypeError(AttributeRefused):
    """SB302: an attribute or variable value does not fit its column's type."""


class HiddenColumn(AttributeRefused):
    """SB303: the query names a column the principal's sandbox hides."""


class MissingVariable(AttributeRefused):
    """SB304: a saved question lacks a value for one of its variables."""


class QueryRefused(Refused):
    """SB4xx: what the query does or contains is refused."""


class NotReadOnly(QueryRefused):
    """SB401: not a single read query (or a write no rule allows)."""


class ForbiddenFunction(QueryRefused):
    """SB402: a function that is not allowed (``.function``)."""


class Unsupported(QueryRefused):
    """SB403: a construct sqlsandbox cannot prove safe (``.construct``)."""


class LimitExceeded(QueryRefused):
    """SB404: a size, depth or operator limit."""


class VerificationFailed(Refused):
    """SB901: the independent verifier refused the rewritten query (a bug)."""


ERROR_CLASSES: Dict[str, type] = {
    "SB001": PolicySyntaxError,
    "SB002": InvalidPolicy,
    "SB003": PolicyFileError,
    "SB004": TestFileError,
    "SB005": PolicyEditError,
    "SB101": ParseError,
    "SB102": UnknownName,
    "SB103": DatabaseRequired,
    "SB104": BuilderError,
    "SB201": AccessDenied,
    "SB202": NativeSqlDenied,
    "SB203": SandboxConflict,
    "SB204": RoutingRefused,
    "SB205": ImpersonationRefused,
    "SB206": WriteDenied,
    "SB207": QueryCreationDenied,
    "SB301": MissingAttribute,
    "SB302": AttributeTypeError,
    "SB303": HiddenColumn,
    "SB304": MissingVariable,
    "SB401": NotReadOnly,
    "SB402": ForbiddenFunction,
    "SB403": Unsupported,
    "SB404": LimitExceeded,
    "SB901": VerificationFailed,
}
"""The class raised for each code."""

_UNKNOWN_KINDS: Dict[str, type] = {
    "user": UnknownUser,
    "group": UnknownGroup,
    "database": UnknownDatabase,
    "question": UnknownQuestion,
}

# A code the library adds later still gets its family's class.
_FAMILIES: Dict[str, type] = {
    "SB0": PolicyError,
    "SB1": InputError,
    "SB2": AccessDenied,
    "SB3": AttributeRefused,
    "SB4": QueryRefused,
    "SB9": VerificationFailed,
}


def _default_code(cls: type) -> str:
    for code, c in ERROR_CLASSES.items():
        if c is cls:
            return code
    return "SB000"


def _from_native(code: str, message: str, refusal: bool, details: Dict[str, Any]) -> SqlsandboxError:
    """Called by the native module for each library error."""
    cls = ERROR_CLASSES.get(code) or _FAMILIES.get(code[:3], SqlsandboxError)
    if cls is UnknownName:
        cls = _UNKNOWN_KINDS.get(str(details.get("kind")), UnknownName)
    exc: SqlsandboxError = cls(message, code, refusal=refusal, details=details)
    return exc

# Tracebacks and pickles name the classes where users import them from.
for _cls in list(ERROR_CLASSES.values()) + list(_FAMILIES.values()) + [
    SqlsandboxError,
    Refused,
    UnknownName,
    UnknownUser,
    UnknownGroup,
    UnknownDatabase,
    UnknownQuestion,
]:
    _cls.__module__ = "sqlsandbox"
del _cls
