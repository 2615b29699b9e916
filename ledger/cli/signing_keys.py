"""``llmring signing-keys …`` (list, rotate, export the Ed25519 keys that sign receipts and
checkpoints) and ``llmring log …`` (issue a signed checkpoint of the project's log,
verify a saved checkpoint offline, prove the log extends a saved checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    App,
    CliError,
    json_option,
    key_value_table,
    new_table,
    num,
    pass_app,
    print_json,
    print_table,
    stdout_console,
)
from ledger.storage.config import ConfigError, ledger_origin
from ledger.tlog.signing import (
    KeyRing,
    KeyRingError,
    PublicKeyFormatError,
    PublicKeyInfo,
    load_public_keys,
    public_keys_json,
    read_keys,
)


def _origin(app: App) -> str:
    try:
        return ledger_origin(app.layout)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _keyring(led: Any) -> KeyRing:
    """The key ring of the open ledger ``led`` (the directory's one key ring)."""
    try:
        return led.notary.keyring
    except (KeyRingError, ConfigError) as exc:
        raise CliError(str(exc)) from None


def _data_keys(app: App) -> list[PublicKeyInfo]:
    """The data directory's public keys, read without taking the ledger's lock."""
    try:
        return read_keys(app.layout.keys)
    except KeyRingError as exc:
        raise CliError(str(exc)) from None


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
    """List every signing key, current and retired (oldest first)."""
    infos = _data_keys(app)
    if as_json:
        print_json(public_keys_json(infos))
        return
    if not infos:
        click.echo(f"no signing keys in {app.layout.keys} yet: one is created when the "
                   "ledger first signs (`llmring log checkpoint`), or by "
                   "`llmring signing-keys rotate`")
        return
    table = new_table("key id", "name", "status", "created", "retired")
    for info in infos:
        table.add_row(info.key_id, info.name, info.status, info.created_at,
                      info.retired_at or "")
    print_table(stdout_console(), table)


@signing_keys_group.command()
@json_option
@pass_app
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
                   "public-keys JSON); vkey: the current key as a C2SP verifier key.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of standard output.")
@pass_app
def export(app: App, fmt: str, output: Path | None) -> None:
    """Export public keys, for verifying receipts and checkpoints offline."""
    infos = _data_keys(app)
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
        text = current[0].pem() if fmt == "pem" else current[0].vkey() + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)


# -- log ---------------------------------------------------------------------------------
@click.group("log")
def log_group() -> None:
    """The project's log: signed checkpoints (C2SP tlog-checkpoint) of its Merkle tree."""


@log_group.command()
@json_option
@pass_app
def checkpoint(app: App, as_json: bool) -> None:
    """Sign the project's log as it is now and print the checkpoint note.

    Issuing again while the log has not grown prints the same checkpoint, with the
    witness cosignatures stored for it (`llmring log add-cosignature`). Save the note:
    `llmring log verify-checkpoint` checks it offline later.
    """
    from ledger.tlog.checkpoint import CheckpointError

    with app.open(create=False) as led:
        try:
            signed = led.checkpoint(app.project)
        except KeyRingError as exc:
            raise CliError(str(exc)) from None
        except CheckpointError as exc:
            raise CliError(str(exc), EXIT_FAILED_CHECK) from None
        note = led.notary.cosigned_note(signed)  # with the witnesses' cosignatures it holds
    if as_json:
        print_json({**signed.to_json(), "note": note})
    else:
        click.echo(note, nl=False)


def _log_verifiers(app: App, public_key: Path | None) -> list[Any]:
    """Verifiers of the ledger's signatures: the keys in ``public_key`` (PEM, public-keys
    JSON or vkey lines) if given, else the data directory's keys."""
    from ledger.tlog.checkpoint import Verifier

    if public_key is not None:
        try:
            infos = load_public_keys(public_key)
        except PublicKeyFormatError as exc:
            raise CliError(str(exc)) from None
    else:
        infos = _data_keys(app)
        if not infos:
            raise CliError(f"no signing keys in {app.layout.keys}: give the signer's "
                           "public key with --public-key FILE")
    return [Verifier.from_info(info) for info in infos]


def _read_note(path: Path) -> str:
    """A checkpoint note from a file: the note text, or the JSON of `log checkpoint
    --json` (its ``note`` member)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text: not a checkpoint", EXIT_FAILED_CHECK
                       ) from None
    if text.lstrip().startswith("{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("note"), str):
            raise CliError(f'{path}: the JSON has no "note" member (expected the output of '
                           "`llmring log checkpoint --json`)")
        return str(obj["note"])
    return text


@log_group.command("verify-checkpoint")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify with the keys in FILE (PEM, public-keys JSON or vkey lines) "
                   "instead of the data directory's keys.")
@click.option("--origin", help="Also require this origin (e.g. ledger.example/acme).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also require the witness cosignatures of this policy file "
                   "(`witness VKEY` lines and `quorum K`).")
@json_option
@pass_app
def verify_checkpoint_cmd(app: App, file: Path, public_key: Path | None, origin: str | None,
                          policy_file: Path | None, as_json: bool) -> None:
    """Verify a saved checkpoint note offline (exit 1 if it does not verify).

    Signatures by keys that are not given (e.g. witnesses' cosignatures) are ignored;
    at least one given key must have signed, and every given key that signed must verify.
    """
    from ledger.tlog.checkpoint import NoteError, verify_note
    from ledger.tlog.checkpoint import parse_checkpoint as parse_body

    note = _read_note(file)
    verifiers = _log_verifiers(app, public_key)
    policy = None
    if policy_file is not None:
        from ledger.tlog.policy import PolicyError, check_quorum, load_policy

        try:
            policy = load_policy(policy_file)
        except PolicyError as exc:
            raise CliError(str(exc)) from None
    witnesses: list[str] = []
    try:
        verified_note, sigs = verify_note(note, verifiers)
        cp = parse_body(verified_note.text)
        if origin is not None and cp.origin != origin:
            raise NoteError(f"the checkpoint is for origin {cp.origin!r}, not {origin!r}")
        if policy is not None:
            witnesses = check_quorum(note, policy)
    except NoteError as exc:
        message = f"{file}: checkpoint does not verify: {exc}"
        if as_json:
            print_json({"valid": False, "error": message})
            click.get_current_context().exit(EXIT_FAILED_CHECK)
        raise CliError(message, EXIT_FAILED_CHECK) from None
    signers = [{"name": s.name, "key_id": s.key_hash.hex()} for s in sigs]
    result: dict[str, Any] = {"valid": True, "origin": cp.origin, "size": cp.size,
                              "root": cp.root.hex(), "signed_by": signers}
    if policy is not None:
        result["cosigned_by"] = witnesses
    if as_json:
        print_json(result)
        return
    click.echo(f"OK: {file}: checkpoint verified")
    stdout_console().print(key_value_table({
        "origin": cp.origin,
        "tree size": num(cp.size),
        "root": cp.root.hex(),
        "signed by": ", ".join(f"{s['name']} ({s['key_id']})" for s in signers),
        **({"cosigned by": f"{', '.join(witnesses)} (quorum {policy.quorum})"}
           if policy is not None else {}),
    }))


@log_group.command("consistency")
@click.option("--from", "from_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint of this project's log you saved earlier (note or JSON).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Trust the keys in FILE instead of the data directory's keys.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the proof bundle (with the new signed checkpoint) to FILE.")
@json_option
@pass_app
def consistency_cmd(app: App, from_file: Path, public_key: Path | None,
                    output: Path | None, as_json: bool) -> None:
    """Prove that the project's log only grew since a checkpoint you kept.

    Checks the saved checkpoint's signature, asks the log for its current signed
    checkpoint and the RFC 9162 consistency proof between the two, and verifies it. Exit 1
    with TAMPERING if the log does not extend the saved checkpoint (keep both notes: they
    are the evidence); keep the new checkpoint for next time (`-o FILE`).
    """
    from ledger.tlog.checkpoint import NoteError, verify_checkpoint
    from ledger.tlog.consistency import TamperEvidence, check_extends, prove_extends

    note = _read_note(from_file)
    verifiers = _log_verifiers(app, public_key)
    origin = f"{_origin(app)}/{app.project}"
    try:
        old = verify_checkpoint(note, verifiers, origin=origin)
    except NoteError as exc:
        raise CliError(f"{from_file}: the saved checkpoint does not verify: {exc}",
                       EXIT_FAILED_CHECK) from None
    try:
        with app.open(create=False) as led:
            bundle = prove_extends(led, app.project, old)
        new = check_extends(old, bundle, verifiers)
    except TamperEvidence as exc:
        if as_json:
            print_json({"consistent": False, "origin": origin, "error": str(exc)})
            click.get_current_context().exit(EXIT_FAILED_CHECK)
        raise CliError(f"TAMPERING: {exc}", EXIT_FAILED_CHECK) from None
    except (KeyRingError, NoteError) as exc:
        raise CliError(str(exc), EXIT_FAILED_CHECK) from None
    if output is not None:
        output.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    result = {"consistent": True, "origin": origin, "old_size": old.size,
              "new_size": new.size, "new_root": new.root.hex(), "proof": bundle["proof"],
              "new_checkpoint": bundle["new"]}
    if as_json:
        print_json(result)
        return
    click.echo(f"OK: the log of {origin} (size {num(new.size)}) extends your checkpoint "
               f"(size {num(old.size)}); proof of {len(bundle['proof'])} hashes verified")
    if output is not None:
        click.echo(f"wrote the proof and the new checkpoint to {output}")


@log_group.command("inclusion")
@click.argument("event_id")
@click.option("--size", type=click.IntRange(min=1),
              help="At the checkpoint signed at this size (default: the log now).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the bundle to FILE (default: print it).")
@pass_app
def inclusion_cmd(app: App, event_id: str, size: int | None, output: Path | None) -> None:
    """Prove that a call is in the project's log at a signed checkpoint.

    The bundle holds the signed checkpoint, the event's canonical fields and its RFC 9162
    audit path; `llmring log verify-inclusion FILE` checks it offline.
    """
    from ledger.tlog.consistency import prove_inclusion

    with app.open(create=False) as led:
        try:
            bundle = prove_inclusion(led, app.project, event_id, size=size)
        except (LookupError, ValueError) as exc:
            raise CliError(str(exc)) from None
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        output.write_bytes(data)
        click.echo(f"wrote the inclusion proof of {event_id} at size "
                   f"{num(bundle['tree_size'])} to {output}")


@log_group.command("verify-inclusion")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Trust the keys in FILE instead of the data directory's keys.")
@json_option
@pass_app
def verify_inclusion_cmd(app: App, file: Path, public_key: Path | None,
                         as_json: bool) -> None:
    """Verify a log inclusion bundle offline (exit 1 if it does not verify)."""
    from ledger.tlog.checkpoint import NoteError
    from ledger.tlog.consistency import (
        ConsistencyFormatError,
        TamperEvidence,
        check_inclusion,
    )

    try:
        bundle = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{file} is not JSON: {exc}") from None
    verifiers = _log_verifiers(app, public_key)
    try:
        cp = check_inclusion(bundle, verifiers)
    except ConsistencyFormatError as exc:
        raise CliError(f"{file}: {exc}") from None
    except (NoteError, TamperEvidence) as exc:
        if as_json:
            print_json({"valid": False, "error": str(exc)})
            click.get_current_context().exit(EXIT_FAILED_CHECK)
        raise CliError(f"INVALID: {exc}", EXIT_FAILED_CHECK) from None
    event_id = bundle["event"].get("event_id")
    if as_json:
        print_json({"valid": True, "event_id": event_id, "origin": cp.origin,
                    "leaf_index": bundle["leaf_index"], "tree_size": cp.size})
        return
    click.echo(f"OK: {event_id} is entry {num(bundle['leaf_index'])} of {cp.origin} at the "
               f"signed checkpoint of size {num(cp.size)}")
