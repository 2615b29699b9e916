"""Tenants (projects): the name rules that make a tenant safe as a path and a log origin."""

from __future__ import annotations

import re

from ledger.errors import TenantError

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the whole name (fullmatch)


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise ``TenantError``."""
    if not isinstance(name, str) or not TENANT_RE.fullmatch(name) or ".." in name:
        raise TenantError(
            f"invalid project name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name
