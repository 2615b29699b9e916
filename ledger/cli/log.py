"""``llmring log …``: the project's log (C2SP tlog-checkpoint of its Merkle tree): issue a
signed checkpoint, prove the log extends a saved checkpoint, prove a call's inclusion
(locally or through ``--server``), verify checkpoints and inclusion bundles offline, and
store witnesses' cosignatures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from ledger.api import operations as ops
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
    read_json_file,
    stdout_console,
)
from ledger.cli.signing_keys import data_keys, server_keys
from ledger.cli.witness import note_or_json
from ledger.tlog.signing import PublicKeyFormatError, load_public_keys


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
    with app.api(create=False) as api:
        signed = dict(api.call(ops.CHECKPOINT))
    # the note with the witnesses' cosignatures stored for it
    note = signed.pop("cosigned_note")
    if as_json:
        print_json({**signed, "note": note})
    else:
        click.echo(note, nl=False)


def _log_verifiers(app: App, public_key: Path | None) -> list[Any]:
    """Verifiers of the ledger's signatures: the keys in ``public_key`` (PEM, public-keys
    JSON or vkey lines) if given, else the keys the server publishes (``--server``), else
    the data directory's keys."""
    from ledger.tlog.checkpoint import Verifier

    if public_key is not None:
        try:
            infos = load_public_keys(public_key)
        except PublicKeyFormatError as exc:
            raise CliError(str(exc)) from None
    elif app.server:
        infos = server_keys(app)
    else:
        infos = data_keys(app)
        if not infos:
            raise CliError(f"no signing keys in {app.layout.keys}: give the signer's "
                           "public key with --public-key FILE")
    return [Verifier.from_info(info) for info in infos]


def prove_extends(api: Any, old: Any) -> dict[str, Any]:
    """The bundle that proves the project's current log extends ``old`` (as
    ``ledger.tlog.consistency.prove_extends`` builds it), from the checkpoint and
    consistency operations. Raises ``TamperEvidence`` when no such proof can exist."""
    from ledger.tlog.consistency import checkpoint_of_note, extension_bundle

    note = api.call(ops.CHECKPOINT)["note"]
    origin = checkpoint_of_note(note).origin
    if old.origin != origin:
        raise CliError(f"the checkpoint is of {old.origin!r}, not of this project's log "
                       f"{origin!r}")

    def at_old(first: int, second: int) -> tuple[str, list[str]]:
        answer = api.call(ops.CONSISTENCY, first=first, second=second)
        return answer["first_root"], list(answer["proof"])

    return extension_bundle(old, note, at_old)


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


@log_group.command("witnesses")
@json_option
@pass_app
def witnesses_cmd(app: App, as_json: bool) -> None:
    """The project's log with each witness of the data directory's witnesses.policy.

    For each witness: its state (current, behind, pending, failing or no-url), the log
    size it last cosigned, its failures in a row and the last error; and whether the
    latest checkpoint is cosigned by the policy's quorum. `llmring serve` submits the
    checkpoints (C2SP tlog-witness); with --server this asks the server.
    """
    with app.api(create=False) as api:
        status = dict(api.call(ops.WITNESSES))
    if as_json:
        print_json(status)
        return
    if status["policy"] is None:
        click.echo("no witnesses.policy in the data directory: no witness is asked to "
                   "cosign (docs/formats.md, witness policy)")
        return
    size = status["checkpoint_size"]
    print_table(stdout_console(), key_value_table({
        "origin": status["origin"],
        "latest checkpoint": "none yet" if size is None else f"size {num(size)}",
        "quorum": f"{status['quorum']} ({'met' if status['quorum_met'] else 'NOT met'})",
    }))
    table = new_table("witness", "state", "cosigned size", "failures", "last error",
                      title="Witnesses", numeric=("cosigned size", "failures"),
                      optional=("last error",))
    for w in status["witnesses"]:
        table.add_row(w["name"], w["state"],
                      "" if w["cosigned_size"] is None else num(w["cosigned_size"]),
                      str(w["failures"]), w["last_error"] or "")
    print_table(stdout_console(), table)


@log_group.command("verify-checkpoint")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify with the keys in FILE (PEM, public-keys JSON or vkey lines) "
                   "instead of the data directory's keys.")
@click.option("--origin", help="Also require this origin (e.g. ledger.example/acme).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also require the witness cosignatures of this policy file "
                   "(`witness NAME VKEY [URL]`, `group NAME K MEMBER…`, `quorum NAME`).")
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
    print_table(stdout_console(), key_value_table({
        "origin": cp.origin,
        "tree size": num(cp.size),
        "root": cp.root.hex(),
        "signed by": ", ".join(f"{s['name']} ({s['key_id']})" for s in signers),
        **({"cosigned by": f"{', '.join(witnesses)} (quorum {policy.describe()})"}
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
    from ledger.tlog.consistency import TamperEvidence, check_extends
    from ledger.tlog.signing import KeyRingError

    note = _read_note(from_file)
    verifiers = _log_verifiers(app, public_key)
    with app.api(create=False) as api:
        origin = api.whoami()["origin"]
        try:
            old = verify_checkpoint(note, verifiers, origin=origin)
        except NoteError as exc:
            raise CliError(f"{from_file}: the saved checkpoint does not verify: {exc}",
                           EXIT_FAILED_CHECK) from None
        try:
            bundle = prove_extends(api, old)
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
@click.option("--format", "fmt", type=click.Choice(["json", "tlog-proof"]), default="json",
              show_default=True,
              help="json: the ledger-log-inclusion/v1 bundle; tlog-proof: a "
                   "c2sp.org/tlog-proof@v1 file (the event's canonical JSON in its extra "
                   "line).")
@pass_app
def inclusion_cmd(app: App, event_id: str, size: int | None, output: Path | None,
                  fmt: str) -> None:
    """Prove that a call is in the project's log at a signed checkpoint.

    The bundle holds the signed checkpoint, the event's canonical fields and its RFC 9162
    audit path; `llmring log verify-inclusion FILE` checks it offline, in either format.
    """
    from ledger.tlog.tlog_proof import to_tlog_proof

    with app.api(create=False) as api:
        bundle = api.call(ops.LOG_INCLUSION, log_id=event_id, size=size)
    data = (to_tlog_proof(bundle).encode() if fmt == "tlog-proof"
            else orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
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
    """Verify a log inclusion bundle offline, JSON or c2sp.org/tlog-proof (exit 1 if it
    does not verify)."""
    from ledger.tlog.checkpoint import NoteError
    from ledger.tlog.consistency import (
        ConsistencyFormatError,
        TamperEvidence,
        check_inclusion,
    )
    from ledger.tlog.tlog_proof import from_tlog_proof, is_tlog_proof

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    verifiers = _log_verifiers(app, public_key)
    try:
        if is_tlog_proof(raw):
            try:
                bundle = from_tlog_proof(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ConsistencyFormatError("a tlog-proof is UTF-8 text") from None
        else:
            bundle = read_json_file(file)
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


@log_group.command("add-cosignature")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--witness-key", "witness_keys", multiple=True,
              help="Accept only this witness's cosignature, and check it (a `llmring "
                   "witness key` VKEY; repeatable).")
@json_option
@pass_app
def add_cosignature_cmd(app: App, file: Path, witness_keys: tuple[str, ...],
                        as_json: bool) -> None:
    """Store the witness cosignatures of FILE, a checkpoint this ledger signed.

    Later `llmring receipts prove` bundles carry them, so verifiers with a witness
    policy accept them. With --server, the server stores them (only the given witnesses'
    lines are sent, each checked first).
    """
    from ledger.tlog.checkpoint import NoteError
    from ledger.tlog.cosignature import parse_cosigner_vkey

    note, _ = note_or_json(file)
    if note is None:
        raise CliError(f"{file} is a consistency bundle; give the cosigned note "
                       "(`llmring witness cosign -o FILE`)")
    try:
        keys = [parse_cosigner_vkey(k) for k in witness_keys] or None
    except NoteError as exc:
        raise CliError(f"--witness-key: {exc}") from None
    if app.server:
        if keys is not None:
            note = _cosigned_only_by(file, note, keys)
        with app.api() as api:
            added = api.call(ops.ADD_COSIGNATURES, note=note)["added"]
    else:
        added = _attach(app, file, note, keys)
    if as_json:
        print_json({"added": added})
    elif added:
        click.echo(f"stored the cosignature(s) of {', '.join(added)}")
    else:
        click.echo("these cosignatures were already stored")


def _attach(app: App, file: Path, note: str, keys: Any) -> list[str]:
    """Store the cosignatures in the data directory's store."""
    from ledger.tlog.checkpoint import NoteError

    with app.open(create=False) as led:  # the ledger's lock orders writers of the store
        try:
            return led.notary.attach_cosignatures(note, keys)
        except NoteError as exc:
            raise CliError(f"{file}: {exc}", EXIT_FAILED_CHECK) from None


def _cosigned_only_by(file: Path, note: str, keys: Any) -> str:
    """The note with only the cosignature lines of ``keys``, each verified."""
    from ledger.tlog.checkpoint import Note, NoteError, format_note, parse_note
    from ledger.tlog.cosignature import verify_cosignature

    try:
        parsed = parse_note(note)
        sigs = []
        for sig in parsed.signatures:
            key = next((k for k in keys if k.matches(sig)), None)
            if key is not None:
                verify_cosignature(parsed.text, sig, key)
                sigs.append(sig)
    except NoteError as exc:
        raise CliError(f"{file}: {exc}", EXIT_FAILED_CHECK) from None
    if not sigs:
        raise CliError(f"{file}: the note carries no cosignature by the given witnesses: "
                       "have a witness cosign it (`llmring witness cosign`)",
                       EXIT_FAILED_CHECK)
    return format_note(Note(parsed.text, tuple(sigs)))
