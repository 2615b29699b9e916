"""``llmring witness …``: run a witness (keep the latest checkpoint of each watched log,
cosign only checkpoints that extend it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from ledger.cli.context import (
    EXIT_FAILED_CHECK,
    CliError,
    json_option,
    key_value_table,
    new_table,
    num,
    print_json,
    print_table,
    stdout_console,
    when,
)
from ledger.tlog.signing import PublicKeyFormatError, load_public_keys


def _witness(ctx: click.Context, name: str | None = None) -> Any:
    from ledger.tlog.witness import Witness, WitnessError

    try:
        return Witness(ctx.find_root().meta["witness_dir"], name)
    except WitnessError as exc:
        raise CliError(str(exc)) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text", EXIT_FAILED_CHECK) from None


def note_or_json(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """A file holding a checkpoint note, the JSON of `log checkpoint --json`, or a
    consistency bundle: (note, bundle)."""
    text = _read_text(path)
    if not text.lstrip().startswith("{"):
        return text, None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(obj, dict) and obj.get("format") == "ledger-consistency/v1":
        return None, obj
    if isinstance(obj, dict) and isinstance(obj.get("note"), str):
        return str(obj["note"]), None
    raise CliError(f"{path}: expected a checkpoint note, the JSON of `llmring log checkpoint "
                   "--json`, or a consistency bundle of `llmring log consistency -o`")


@click.group("witness")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              envvar="LLMRING_WITNESS_DIR", default="./witness", show_default=True,
              show_envvar=True, help="The witness's directory (its key and state).")
@click.pass_context
def witness_group(ctx: click.Context, directory: Path) -> None:
    """Run a witness: cosign a log's checkpoints only while the log only grows.

    The witness keeps, per log, the latest checkpoint it cosigned. It cosigns a new one
    (C2SP tlog-cosignature, Ed25519) only if the log's consistency proof shows it extends
    that one, and refuses forks and truncations (exit 1, TAMPERING).

    \b
    Set up:    llmring witness init --name witness.example/w1
               llmring witness add-log ORIGIN --public-key LOG.pem
    Each time: llmring log consistency --from HELD.note -o bundle.json   (ledger side)
               llmring witness cosign --proof bundle.json -o cosigned.note
               llmring log add-cosignature cosigned.note                 (ledger side)
    Or online: llmring witness serve --listen HOST:PORT   (C2SP tlog-witness)
    """
    ctx.find_root().meta["witness_dir"] = directory


@witness_group.command("init")
@click.option("--name", required=True,
              help="The witness's key name, a schema-less URL (e.g. witness.example/w1).")
@json_option
@click.pass_context
def init_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create the witness (its directory and Ed25519 key) and print its key."""
    w = _witness(ctx, name)
    key = w.public_key()
    if as_json:
        print_json({"name": w.name, "vkey": key.vkey(), "directory": str(w.directory)})
        return
    click.echo(f"witness {w.name} in {w.directory}; its key (for policy files):")
    click.echo(f"witness {key.vkey()}")


@witness_group.command("key")
@json_option
@click.pass_context
def key_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print the witness's verifier key (a `witness VKEY` policy line takes it)."""
    key = _witness(ctx).public_key()
    if as_json:
        print_json({"name": key.name, "key_id": key.key_id.hex(), "vkey": key.vkey()})
    else:
        click.echo(key.vkey())


@witness_group.command("add-log")
@click.argument("origin")
@click.option("--public-key", "public_key", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The log's public keys (PEM, public-keys JSON or vkey lines), e.g. from "
                   "`llmring signing-keys export --format json`.")
@json_option
@click.pass_context
def add_log_cmd(ctx: click.Context, origin: str, public_key: Path, as_json: bool) -> None:
    """Watch the log ORIGIN (the first line of its checkpoints, e.g. ledger.example/acme)."""
    from ledger.tlog.witness import WitnessError

    w = _witness(ctx)
    try:
        keys = load_public_keys(public_key)
        w.add_log(origin, keys)
    except (PublicKeyFormatError, WitnessError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json({"origin": origin, "keys": [k.to_json() for k in keys]})
    else:
        click.echo(f"watching {origin} ({len(keys)} key(s))")


@witness_group.command("cosign")
@click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="The checkpoint to cosign (note or `log checkpoint --json`); optional "
                   "with --proof.")
@click.option("--proof", "proof", type=click.Path(dir_okay=False, path_type=Path),
              help="The consistency bundle of `llmring log consistency -o` from the "
                   "checkpoint the witness holds; not needed the first time.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the cosigned note to FILE instead of standard output.")
@json_option
@click.pass_context
def cosign_cmd(ctx: click.Context, checkpoint: Path | None, proof: Path | None,
               output: Path | None, as_json: bool) -> None:
    """Cosign a checkpoint if it extends the one held for its log (exit 1 if not)."""
    from ledger.tlog.checkpoint import NoteError
    from ledger.tlog.consistency import checkpoint_of_note
    from ledger.tlog.witness import WitnessError, WitnessRefusal

    if checkpoint is None and proof is None:
        raise CliError("give --checkpoint FILE (the first time) or --proof BUNDLE")
    note = note_or_json(checkpoint)[0] if checkpoint is not None else None
    if checkpoint is not None and note is None:
        raise CliError(f"{checkpoint} is a consistency bundle: pass it with --proof")
    bundle: Any = []
    if proof is not None:
        proof_note, bundle = note_or_json(proof)
        if bundle is None:  # a plain checkpoint: only valid from size 0 or the same size
            note, bundle = note or proof_note, []
    w = _witness(ctx)
    try:
        cosigned = w.cosign(note, bundle)
    except WitnessRefusal as exc:
        if as_json:
            print_json({"cosigned": False, "tampering": True, "error": str(exc),
                        "held": exc.held, "offered": exc.offered})
            ctx.exit(EXIT_FAILED_CHECK)
        raise CliError(f"TAMPERING: {exc}", EXIT_FAILED_CHECK) from None
    except (WitnessError, NoteError) as exc:
        raise CliError(str(exc), EXIT_FAILED_CHECK) from None
    if output is not None:
        output.write_text(cosigned)
    cp = checkpoint_of_note(cosigned)
    if as_json:
        print_json({"cosigned": True, "origin": cp.origin, "size": cp.size,
                    "root": cp.root.hex(), "note": cosigned})
    elif output is not None:
        click.echo(f"cosigned {cp.origin} at size {num(cp.size)}; wrote {output}")
    else:
        click.echo(cosigned, nl=False)


@witness_group.command("show")
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, as_json: bool) -> None:
    """The witness's key, the logs it watches and the checkpoint it holds for each."""
    w = _witness(ctx)
    key = w.public_key()
    logs = []
    for origin in sorted(w.logs()):
        held = w.latest(origin) or {}
        logs.append({"origin": origin, "size": held.get("size"), "root": held.get("root"),
                     "cosigned_at": held.get("cosigned_at"), "note": held.get("note")})
    if as_json:
        print_json({"name": w.name, "vkey": key.vkey(), "logs": logs})
        return
    print_table(stdout_console(), key_value_table({"witness": w.name, "key": key.vkey()}))
    if not logs:
        click.echo("no logs watched yet: `llmring witness add-log ORIGIN --public-key FILE`")
        return
    table = new_table("origin", "size", "root", "cosigned at", title="Logs (times in UTC)",
                      numeric=("size",), ids=("root",), optional=("root",))
    for log in logs:
        table.add_row(log["origin"], "" if log["size"] is None else num(log["size"]),
                      log["root"] or "(nothing cosigned yet)",
                      when(log["cosigned_at"]) if log["cosigned_at"] else "")
    print_table(stdout_console(), table)


@witness_group.command("serve")
@click.option("--listen", default="127.0.0.1:7380", show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0: any free port, printed at start).")
@click.option("--prefix", default="", metavar="/PATH",
              help="The submission prefix: requests go to POST <prefix>/add-checkpoint.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve_cmd(ctx: click.Context, listen: str, prefix: str, log_level: str) -> None:
    """Serve the C2SP tlog-witness protocol: POST <prefix>/add-checkpoint.

    Any log added with `llmring witness add-log ORIGIN --public-key FILE` (ours or
    another's, by its vkey) may submit. Answers as c2sp.org/tlog-witness says: 200 with
    the cosignature line, 400 malformed (or old size above the checkpoint's), 403 no
    signature by the log's keys, 404 unknown origin, 409 (text/x.tlog.size: the size
    held) for a stale old size or the same size with another root, 422 a consistency
    proof that does not verify. Each origin's check and durable update are atomic, so
    concurrent submissions never roll the held size back.
    """
    import signal

    import uvicorn

    from ledger.server.witness import WitnessApp

    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise CliError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:7380")
    if prefix and (not prefix.startswith("/") or any(c.isspace() for c in prefix)):
        raise CliError(f"--prefix {prefix!r}: a URL path starting with '/', e.g. /witness")
    w = _witness(ctx)
    w.signing_key()  # created (or its mode checked) before the first request
    if not w.logs():
        click.echo("warning: no logs watched yet: every request is 404 until `llmring "
                   "witness add-log ORIGIN --public-key FILE`", err=True)
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises it once stopped
    uvicorn.run(WitnessApp(w, prefix), host=host.strip("[]"), port=int(port_text),
                log_level=log_level, access_log=log_level == "debug", lifespan="on")
