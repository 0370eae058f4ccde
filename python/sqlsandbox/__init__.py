"""sqlsandbox: row- and column-level security for SQL, as a compiler.

Load a policy once, share it between threads, and rewrite every query for
the person asking::

    import sqlsandbox

    policy = sqlsandbox.Policy.from_file("policies/saas.yaml")
    out = policy.rewrite("SELECT * FROM orders", user="alice", params=True)
    out.sql      # every protected table replaced by alice's sandbox
    out.params   # [42]: her attribute values, bound, never pasted

Refusals raise a ``SqlsandboxError`` subclass carrying the stable code
(``err.code == "SB303"``). Rewrites release the GIL.
"""

from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._native import (
    Applied,
    Explanation,
    Fencing,
    Policy,
    Principal,
    Rewritten,
    dialects,
    version,
)

__version__ = version()

__all__ = [
    "Policy",
    "Principal",
    "Rewritten",
    "Applied",
    "Fencing",
    "Explanation",
    "dialects",
    "version",
    *_error_names,
]
