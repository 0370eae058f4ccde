"""Type stubs of sqlsandbox's native module (import ``sqlsandbox`` instead)."""

from decimal import Decimal
from os import PathLike
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

Scalar = Union[str, int, float, bool, Decimal]
"""An attribute or variable value given to sqlsandbox."""

AttributeValue = Union[Scalar, Sequence[Scalar]]
"""One value, or a list (a multi-valued attribute: ``IN (...)``)."""

BoundValue = Union[str, int, bool, Decimal]
"""A bound parameter's value as returned (decimals stay exact)."""

Question = Union[Mapping[str, Any], str]
"""A query-builder question: a dict, or its JSON text."""

def version() -> str:
    """The version of the Rust crate this was built from."""

def dialects() -> List[str]:
    """The dialect names ``dialect=`` takes."""

class Principal:
    """Who is asking, resolved once with ``Policy.principal(...)``."""

    @property
    def name(self) -> str: ...
    @property
    def groups(self) -> List[str]: ...
    @property
    def attributes(self) -> Dict[str, Union[BoundValue, List[BoundValue]]]: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def is_anonymous(self) -> bool: ...

class Applied:
    """One sandbox applied to one table reference."""

    @property
    def table(self) -> str: ...
    @property
    def alias(self) -> str: ...
    @property
    def groups(self) -> List[str]: ...
    @property
    def kind(self) -> str:
        """``"basic"``, ``"custom"``, ``"union"``, ``"rules"`` or ``"masked"``."""
    @property
    def question(self) -> Optional[str]: ...
    @property
    def bindings(self) -> List[Tuple[str, Union[BoundValue, List[BoundValue]]]]: ...
    def to_dict(self) -> Dict[str, Any]: ...

class Fencing:
    """Whether the sandboxes were fenced, and why."""

    @property
    def mode(self) -> str: ...
    @property
    def fenced(self) -> bool: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def pushed(self) -> int: ...
    def to_dict(self) -> Dict[str, Any]: ...

class Rewritten:
    """The sandboxed SQL, its parameters, where it runs and what applied."""

    @property
    def sql(self) -> str: ...
    @property
    def params(self) -> List[BoundValue]: ...
    @property
    def param_types(self) -> List[Optional[str]]: ...
    @property
    def database(self) -> str: ...
    @property
    def dialect(self) -> str: ...
    @property
    def destination(self) -> Optional[str]: ...
    @property
    def role(self) -> Optional[str]: ...
    @property
    def role_statement(self) -> Optional[str]: ...
    @property
    def applied(self) -> List[Applied]: ...
    @property
    def fencing(self) -> Fencing: ...
    @property
    def fingerprint(self) -> str: ...
    def for_paramstyle(
        self, style: str
    ) -> Tuple[str, Union[Tuple[BoundValue, ...], Dict[str, BoundValue]]]:
        """The SQL and parameters in a PEP 249 paramstyle (``qmark``,
        ``numeric``, ``named``, ``format``, ``pyformat``)."""
    def to_dict(self) -> Dict[str, Any]:
        """The shape of ``sqlsandbox rewrite --format json``."""

class Explanation:
    """What a principal may read and why; with a query, what it became."""

    @property
    def principal(self) -> str: ...
    @property
    def groups(self) -> List[str]: ...
    @property
    def admin(self) -> bool: ...
    @property
    def databases(self) -> List[Dict[str, Any]]: ...
    @property
    def query(self) -> Optional[Rewritten]: ...
    @property
    def error(self) -> Optional[Exception]:
        """The query's refusal (a ``SqlsandboxError``), not raised."""
    @property
    def text(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]:
        """The shape of ``sqlsandbox explain --format json``."""

class Policy:
    """A compiled policy: immutable, shared by threads."""

    @staticmethod
    def from_file(
        path: Union[str, "PathLike[str]"], *, cache_bytes: Optional[int] = None
    ) -> "Policy": ...
    @staticmethod
    def from_yaml(
        text: str, name: str = "<string>", *, cache_bytes: Optional[int] = None
    ) -> "Policy": ...
    @property
    def file(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def databases(self) -> List[str]: ...
    @property
    def users(self) -> List[str]: ...
    @property
    def groups(self) -> List[str]: ...
    @property
    def questions(self) -> List[str]: ...
    def principal(
        self,
        *,
        user: Optional[str] = None,
        groups: Optional[Sequence[str]] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        claims: Optional[Union[Mapping[str, Any], str]] = None,
        api_key: Optional[str] = None,
        anonymous: bool = False,
        name: Optional[str] = None,
    ) -> Principal: ...
    def rewrite(
        self,
        sql: str,
        *,
        principal: Optional[Principal] = None,
        user: Optional[str] = None,
        groups: Optional[Sequence[str]] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        claims: Optional[Union[Mapping[str, Any], str]] = None,
        api_key: Optional[str] = None,
        anonymous: bool = False,
        name: Optional[str] = None,
        database: Optional[str] = None,
        dialect: Optional[str] = None,
        params: bool = False,
        fence: Optional[str] = None,
        emit_role: bool = False,
        local_role: bool = False,
        max_sql_bytes: Optional[int] = None,
        max_depth: Optional[int] = None,
        max_operators: Optional[int] = None,
        cache: bool = True,
    ) -> Rewritten: ...
    def rewrite_builder(
        self,
        question: Question,
        *,
        principal: Optional[Principal] = None,
        user: Optional[str] = None,
        groups: Optional[Sequence[str]] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        claims: Optional[Union[Mapping[str, Any], str]] = None,
        api_key: Optional[str] = None,
        anonymous: bool = False,
        name: Optional[str] = None,
        database: Optional[str] = None,
        dialect: Optional[str] = None,
        params: bool = False,
        fence: Optional[str] = None,
        emit_role: bool = False,
        local_role: bool = False,
        max_sql_bytes: Optional[int] = None,
        max_depth: Optional[int] = None,
        max_operators: Optional[int] = None,
    ) -> Rewritten: ...
    def rewrite_question(
        self,
        question: str,
        variables: Optional[Mapping[str, AttributeValue]] = None,
        *,
        principal: Optional[Principal] = None,
        user: Optional[str] = None,
        groups: Optional[Sequence[str]] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        claims: Optional[Union[Mapping[str, Any], str]] = None,
        api_key: Optional[str] = None,
        anonymous: bool = False,
        name: Optional[str] = None,
        database: Optional[str] = None,
        dialect: Optional[str] = None,
        params: bool = False,
        fence: Optional[str] = None,
        emit_role: bool = False,
        local_role: bool = False,
        max_sql_bytes: Optional[int] = None,
        max_depth: Optional[int] = None,
        max_operators: Optional[int] = None,
    ) -> Rewritten: ...
    def explain(
        self,
        *,
        principal: Optional[Principal] = None,
        user: Optional[str] = None,
        groups: Optional[Sequence[str]] = None,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        claims: Optional[Union[Mapping[str, Any], str]] = None,
        api_key: Optional[str] = None,
        anonymous: bool = False,
        name: Optional[str] = None,
        sql: Optional[str] = None,
        builder: Optional[Question] = None,
        database: Optional[str] = None,
    ) -> Explanation: ...
    def explain_all_users(self) -> Dict[str, Any]: ...
    def cache_stats(self) -> Optional[Dict[str, int]]: ...
    def clear_cache(self) -> None: ...
