"""Tenants (projects): the name rules that make a tenant safe as a path and a log origin."""

from __future__ import annotations

import re

from ledger.errors import TenantError

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the whole name (fullmatch)


NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_name(name: object) -> bool:
    """Whether ``name`` follows the rule of project names (also budget names): safe as
    one path component and in a log origin."""
    return isinstance(name, str) and TENANT_RE.fullmatch(name) is not None and ".." not in name


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise ``TenantError``."""
    if not is_name(name):
        raise TenantError(f"invalid project name {name!r}: {NAME_RULE}")
    return name
