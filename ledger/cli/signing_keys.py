"""``llmring signing-keys …``: list, rotate and export the Ed25519 keys that sign receipts
and checkpoints (on the data directory only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from ledger.cli.context import (
    App,
    CliError,
    json_option,
    local_only,
    new_table,
    pass_app,
    print_json,
    print_table,
    stdout_console,
    when,
)
from ledger.storage.config import ConfigError, ledger_origin, log_key_names
from ledger.tlog.signing import (
    KeyRing,
    KeyRingError,
    PublicKeyInfo,
    public_keys_json,
    read_keys,
)


def _keyring(led: Any) -> KeyRing:
    """The key ring of the open ledger ``led`` (the directory's one key ring)."""
    try:
        return led.notary.keyring
    except (KeyRingError, ConfigError) as exc:
        raise CliError(str(exc)) from None


def _log_key_names(app: App) -> bool:
    """Whether the data directory signs checkpoints under each log's origin."""
    try:
        return log_key_names(app.layout)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def data_keys(app: App) -> list[PublicKeyInfo]:
    """The data directory's public keys, read without taking the ledger's lock."""
    try:
        return read_keys(app.layout.keys)
    except KeyRingError as exc:
        raise CliError(str(exc)) from None


def server_keys(app: App) -> list[PublicKeyInfo]:
    """Every public key the server (``--server``) publishes; needs no API key."""
    from ledger.api import operations as ops
    from ledger.tlog.signing import PublicKeyFormatError, parse_public_keys_json

    try:
        with app.api(public=True) as api:
            answer = api.call(ops.PUBLIC_KEYS)
        return parse_public_keys_json(answer)
    except (CliError, ValueError, PublicKeyFormatError) as exc:
        message = exc.message if isinstance(exc, CliError) else str(exc)
        raise CliError(f"cannot get the public keys of {app.server}: {message}") from None


# -- signing-keys ------------------------------------------------------------------------
@click.group("signing-keys")
def signing_keys_group() -> None:
    """The Ed25519 keys that sign receipts and checkpoints.

    Keys live in DATA/keys/: keys.json lists every public key (current and retired),
    <key id>.key holds one private key (mode 0600). The first key is created when the
    ledger first signs something, or by `rotate`.
    """


@signing_keys_group.command("list")
@json_option
@pass_app
def list_keys(app: App, as_json: bool) -> None:
    """List every signing key, current and retired (oldest first); with --server, the
    keys the server publishes."""
    infos = server_keys(app) if app.server else data_keys(app)
    if as_json:
        print_json(public_keys_json(infos))
        return
    if not infos:
        click.echo(f"no signing keys in {app.layout.keys} yet: one is created when the "
                   "ledger first signs (`llmring log checkpoint`), or by "
                   "`llmring signing-keys rotate`")
        return
    table = new_table("key id", "name", "status", "created", "retired",
                      title="Signing keys (times in UTC)", optional=("retired",))
    for info in infos:
        table.add_row(info.key_id, info.name, info.status, when(info.created_at),
                      when(info.retired_at) if info.retired_at else "")
    print_table(stdout_console(), table)


@signing_keys_group.command()
@json_option
@pass_app
@local_only
def rotate(app: App, as_json: bool) -> None:
    """Retire the current key and sign with a new one from now on.

    Retired keys stay listed and published, so everything they signed keeps verifying.
    With no key yet, creates the first one.
    """
    with app.open() as led:  # the ledger's lock keeps a running writer from racing it
        keyring = _keyring(led)
        before = keyring.current_info() if keyring.keys() else None
        try:
            key = keyring.rotate()
        except (KeyRingError, OSError) as exc:
            raise CliError(f"cannot rotate the signing key: {exc}") from None
    if as_json:
        print_json({"current": key.info.to_json(),
                    "retired": before.key_id if before else None,
                    **public_keys_json(keyring.keys())})
        return
    if before:
        click.echo(f"retired {before.key_id}; signing with {key.info.key_id} "
                   f"({key.info.name}) from now on")
    else:
        click.echo(f"created signing key {key.info.key_id} ({key.info.name})")


@signing_keys_group.command()
@click.option("--format", "fmt", type=click.Choice(["pem", "json", "vkey"]), default="pem",
              show_default=True,
              help="pem: the current key as SubjectPublicKeyInfo; json: every key (the "
                   "public-keys JSON); vkey: every key as a C2SP verifier key, one a line, "
                   "the current key first, then the retired ones, newest first (named "
                   "after the project's log in a directory with per-log key names).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of standard output.")
@pass_app
def export(app: App, fmt: str, output: Path | None) -> None:
    """Export public keys, for verifying receipts and checkpoints offline (with
    --server, the keys the server publishes)."""
    infos = server_keys(app) if app.server else data_keys(app)
    if not infos:
        raise CliError(f"no signing keys in {app.layout.keys} yet: create one with "
                       "`llmring signing-keys rotate` (or `llmring log checkpoint`)")
    if fmt == "json":
        text = orjson.dumps(public_keys_json(infos), option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        current = [info for info in infos if info.retired_at is None]
        if len(current) != 1:
            raise CliError(f"{app.layout.keys_file} lists {len(current)} current "
                           "keys; run `llmring signing-keys rotate` to fix it")
        if fmt == "pem":
            text = current[0].pem()
        else:  # a verifier who missed a rotation still checks what older keys signed
            retired = [info for info in reversed(infos) if info.retired_at is not None]
            listed = [current[0], *retired]
            if not app.server and _log_key_names(app):
                name = f"{ledger_origin(app.layout)}/{app.project}"
                listed = [PublicKeyInfo.of(name, i.public_key, i.created_at, i.retired_at)
                          for i in listed]
            text = "".join(info.vkey() + "\n" for info in listed)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)
