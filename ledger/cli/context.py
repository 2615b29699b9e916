"""Shared plumbing of the ``llmring`` commands: the context object that opens the ledger
or chooses the API's transport (``Api``: local on the data directory, or HTTP with
``--server``), errors with exit codes, JSON and table output, progress bars, and date parsing.

Exit codes: 0 ok, 1 a failed check (e.g. ``ledger verify`` found tampering), 2 a usage
error (bad input: an unknown file, a bad line, a bad date, an unknown time zone, a data
directory in use by another process).

Dates: every date option (``--start``/``--end``/``--ts``) is read in the zone of the
command's ``--tz`` option (``zone_option``; default: the machine's zone, ``machine_zone``),
by ``parse_when`` and ``parse_window``; the CLI sends the instants it means (UTC) over
either transport.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import orjson

from ledger.errors import (
    LedgerError,
    LedgerLockedError,
    ManifestError,
    NotWritableError,
    ObjectStoreError,
    OldLayoutError,
    ServerUnavailableError,
    StorageUriError,
    TamperEvidence,
)
from ledger.lazy import lazy
from ledger.model.dates import RANGE_TEXT, parse_bound, utc_instant
from ledger.model.event import format_ts, ts_to_us
from ledger.model.money import format_usd
from ledger.storage.layout import DataDir

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

# rich (~2 MiB) is imported by the first table, console or progress bar: not by a command
# that prints none (``llmring serve``)
rich_box = lazy("rich.box")
rich_console = lazy("rich.console")
rich_progress = lazy("rich.progress")
rich_table = lazy("rich.table")
rich_text = lazy("rich.text")

EXIT_OK = 0
EXIT_FAILED_CHECK = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error printed as ``Error: …`` on stderr; exit 2 unless told otherwise."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def cli_error(exc: LedgerError) -> CliError:
    """The CLI's one mapping of the project's errors: the message (a server's refusal
    says so), exit 1 for a failed check (tampering, a damaged data directory), else 2 (a
    mistake the user can fix: bad input, a locked directory, no server there)."""
    message = str(exc.detail)
    if exc.request:  # answered by a server
        hint = " (check --api-key / LLMRING_API_KEY)" if exc.status == 401 else ""
        message = f"the server refused ({exc.status}): {message}{hint}"
    return CliError(message, exit_code_of(exc))


def exit_code_of(exc: LedgerError) -> int:
    if isinstance(exc, TamperEvidence | ManifestError):
        return EXIT_FAILED_CHECK
    if exc.request or isinstance(exc, LedgerLockedError | OldLayoutError | ServerUnavailableError
                                 | StorageUriError | ObjectStoreError):
        return EXIT_USAGE
    return EXIT_FAILED_CHECK if exc.status >= 500 else EXIT_USAGE


class Commands(click.Group):
    """The ``llmring`` group: any project error a command lets through is reported by
    ``cli_error`` (a message and an exit code), never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise cli_error(exc) from None


@dataclass
class App:
    """What the group's global options select: a data directory and a project."""

    data: Path
    project: str
    server: str | None = None  # --server URL: commands that support it call the server
    api_key: str | None = None
    storage: str | None = None  # --storage URI: where the directory's segments live


    @cached_property
    def layout(self) -> DataDir:
        """The names of the data directory's files (built once per command)."""
        return DataDir(self.data)

    @contextmanager
    def open(self, *, create: bool = True, accept_loss: bool = False,
             reads: bool = False, iceberg: bool | None = None) -> Iterator[Any]:
        """Open the ledger for one command and close it after (closing seals the journal).

        ``create=False`` refuses a directory that holds no ledger yet (read commands);
        ``accept_loss`` cuts a journal damaged inside at the damage (``report_losses``
        says so on stderr); ``reads``: a command that only reads opens a directory
        another process is writing read-only (its sealed segments), saying so;
        ``iceberg`` as ``Ledger``'s."""
        from ledger.core.facade import Ledger

        if not create:
            self.require_existing()
        try:
            try:
                led = Ledger(self.data, accept_loss=accept_loss, iceberg=iceberg,
                             storage=self.storage)
            except LedgerLockedError:
                if not reads:
                    raise
                led = Ledger(self.data, read_only=True, storage=self.storage)
                click.echo(f"note: {self.data} is being written by another process: read "
                           "its sealed segments only (the newest calls, not yet sealed, "
                           "are not counted)", err=True)
        except (LedgerLockedError, OldLayoutError, StorageUriError, ObjectStoreError) as exc:
            raise CliError(str(exc)) from None
        except NotWritableError as exc:  # its message names the path and the need
            raise CliError(str(exc), exit_code_of(exc)) from None
        except ManifestError as exc:
            raise CliError(str(exc), EXIT_FAILED_CHECK) from None
        except LedgerError as exc:
            raise CliError(f"cannot open {self.data}: {exc}", EXIT_FAILED_CHECK) from None
        except OSError as exc:
            raise CliError(f"cannot open {self.data}: {exc.strerror or exc}") from None
        report_losses(led.accepted_losses)
        try:
            yield led
        finally:
            led.close()

    def require_existing(self) -> None:
        if not self.layout.holds_ledger():
            raise CliError(f"no ledger in {self.data} (use --data DIR, or create one with "
                           "`llmring ingest FILE` or `llmring demo`)")

    @contextmanager
    def api(self, *, create: bool = True, public: bool = False,
            reads: bool = False) -> Iterator[Api]:
        """The API for one command, on the transport the global options choose: HTTP to
        ``--server`` (the API key names the project), else local on the data directory
        (opened, and closed after; ``create=False`` refuses a directory with no ledger).
        ``public``: only public operations follow, which need no API key; ``reads``: as
        ``open``'s."""
        if self.server:
            from ledger.api.transport import HttpTransport

            if not self.api_key and not public:
                raise CliError("--server needs --api-key (or LLMRING_API_KEY); create a key "
                               "with `llmring keys create --project NAME` on the server's "
                               "data directory")
            http = HttpTransport(self.server, self.api_key)
            try:
                yield Api(http, server=self.server)
            finally:
                http.close()
            return
        from ledger.api.service import LedgerService
        from ledger.api.transport import LocalTransport
        from ledger.tlog.signing import KeyRingError

        with self.open(create=create, reads=reads) as led:
            try:
                service = LedgerService(self.data, ledger=led)
            except KeyRingError as exc:
                raise CliError(str(exc)) from None
            yield Api(LocalTransport(service, self.project), service=service)

    def require_local(self, command: str) -> None:
        """Refuse ``--server`` for a command that only makes sense on a data directory."""
        if self.server:
            raise CliError(f"`llmring {command}` works on a data directory only, not "
                           f"through --server; run it where the data directory is "
                           f"(`llmring --data DIR {command}`)")


class Api:
    """The API's operations (``ledger.api.operations``) on the transport one command
    uses: ``call(OPERATION, **params)`` answers the same dicts locally and over HTTP, and
    turns a refusal into a ``CliError`` (exit 1 for a failed check, else 2).
    ``project`` names the project the command reads and writes: the local one, or the
    API key's (the server says which)."""

    def __init__(self, transport: Any, *, server: str | None = None,
                 service: Any = None) -> None:
        self.transport = transport
        self.server = server
        self.service = service  # the local LedgerService (None with --server)
        self._whoami: dict[str, Any] | None = None

    @property
    def remote(self) -> bool:
        return self.server is not None

    def call(self, op: Any, /, **params: Any) -> Any:
        try:
            return self.transport.call(op, **params)
        except LedgerError as exc:
            raise self.error(exc) from None

    def error(self, exc: LedgerError) -> CliError:
        """The ``CliError`` of a refusal (``cli_error``); locally, a signing key that
        cannot be used is a mistake the user can fix (exit 2), not a failed check."""
        from ledger.errors import KeyRingError

        if not self.remote and isinstance(exc, KeyRingError):
            return CliError(str(exc.detail))
        return cli_error(exc)

    def whoami(self) -> dict[str, Any]:
        if self._whoami is None:
            from ledger.api import operations as ops

            self._whoami = dict(self.call(ops.WHOAMI))
        return self._whoami

    @property
    def project(self) -> str:
        """The project this command reads and writes (the API key's with --server)."""
        return str(self.whoami()["project"])


pass_app = click.make_pass_decorator(App)


def local_only(f: F) -> F:
    """For a command that only makes sense on a data directory: with ``--server`` it
    stops with a clear error (put it under ``pass_app``)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        app = ctx.find_object(App)
        if app is not None:
            app.require_local(" ".join(ctx.command_path.split()[1:]))
        return f(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (for scripts) instead of a table.")(f)


def accept_loss_option(f: F) -> F:
    return click.option(
        "--accept-loss", is_flag=True,
        help="If the journal is damaged inside, cut it at the damage and go on: the "
             "acknowledged appends after it are lost. The damaged file is kept in "
             "journal/damaged/ and the loss recorded; `ledger verify` reports it.")(f)


def report_losses(losses: list[dict[str, Any]]) -> None:
    """Say on stderr what opening with ``--accept-loss`` cut."""
    for loss in losses:
        click.echo(f"warning: {loss['journal']} was damaged at byte {loss['offset']}: cut "
                   f"at byte {loss['cut_at']} (--accept-loss), {loss['events_lost']} "
                   f"acknowledged events lost; kept {', '.join(loss['kept'])}; recorded in "
                   f"{loss['journal'].rsplit('/', 1)[0]}/losses.jsonl", err=True)


def read_json_file(file: Path) -> Any:
    """The JSON document in ``file`` (a receipt, a proof bundle); a CliError naming the
    file when it cannot be read or is not JSON."""
    try:
        return orjson.loads(file.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{file} is not JSON: {exc}") from None


# -- output ------------------------------------------------------------------------------
def print_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def stdout_console() -> Console:
    """A console on stdout; wide enough not to wrap tables when stdout is not a terminal."""
    console = rich_console.Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = rich_console.Console(highlight=False, width=200)
    return console


def stderr_console() -> Console:
    return rich_console.Console(stderr=True, highlight=False)


ID_COLUMNS = frozenset({"id", "receipt", "key id", "log id", "event id"})
"""Columns of ids: printed whole on one line, never wrapped, so an id can be copied
from a listing into ``get`` (the other text columns wrap instead)."""

TEXT_MIN = 20
"""The narrowest a wrapping text column gets on a narrow terminal (a longer word is
folded only below this)."""


def new_table(*columns: str, title: str | None = None, numeric: tuple[str, ...] = (),
              fold: tuple[str, ...] = (), ids: tuple[str, ...] = (),
              optional: tuple[str, ...] = ()) -> Table:
    """A plain table. Numbers and ids (``ID_COLUMNS``, and ``ids``) are never cut; on a
    narrow terminal the other text columns wrap (at spaces; a word is folded only past
    ``TEXT_MIN``; ``fold`` names columns of long hex, which fold at any width), headers
    wrap at their spaces, and then the ``optional`` columns are left out, first named
    first, with a note. Print it with ``print_table``, which reads the table's
    ``optional`` columns and its ``whole`` ones (never wrapped: as wide as the widest
    cell)."""
    table = rich_table.Table(title=title, box=rich_box.SIMPLE_HEAD, title_justify="left",
                             title_style="bold", show_edge=False, pad_edge=False,
                             padding=(0, 1, 0, 0))
    table.optional = optional  # type: ignore[attr-defined]
    table.whole = set()  # type: ignore[attr-defined]
    for name in columns:
        header = rich_text.Text(name, overflow="fold")  # a header may wrap at its spaces
        if name in numeric:
            table.add_column(header, justify="right")
            table.whole.add(name)  # type: ignore[attr-defined]
        elif name in ID_COLUMNS or name in ids:
            table.add_column(header, overflow="ignore")
            table.whole.add(name)  # type: ignore[attr-defined]
        else:
            table.add_column(header, overflow="fold", min_width=8 if name in fold else None)
    return table


def _longest_word(text: str) -> int:
    return max(map(len, text.split()), default=0)


def _set_min_widths(table: Table) -> None:
    """Each column's narrowest: ids and numbers their widest cell, text its longest word
    up to ``TEXT_MIN``; never below the longest word of the header."""
    whole = getattr(table, "whole", None)
    for column in table.columns:
        header = _longest_word(str(column.header))
        cells = [str(c) for c in column.cells]
        if column.no_wrap if whole is None else str(column.header) in whole:
            widest = max(map(len, cells), default=0)
        elif column.min_width is not None:  # a ``fold`` column keeps its own
            continue
        else:
            widest = min(max(map(_longest_word, cells), default=0), TEXT_MIN)
        column.min_width = max(widest, header, 1)


def _widest_line(text: str) -> int:
    return max(map(len, text.splitlines()), default=0)


def _widths(table: Table, width: int) -> list[int] | None:
    """The columns' widths (without padding) that lay ``table`` out within ``width``
    with every column at least its min_width, or None when their minimums do not fit.
    Headers wrap first (a column no wider than its widest cell), then the widest text
    columns give way, one character at a time, down to their minimums."""
    room = width - table._extra_width - sum(table._get_padding_width(c._index)
                                            for c in table.columns)
    lows = [c.min_width or 1 for c in table.columns]
    if sum(lows) > room:
        return None
    cells = [max(map(_widest_line, map(str, c.cells)), default=0) for c in table.columns]
    widths = [max(cell, _widest_line(str(c.header)), low)
              for c, cell, low in zip(table.columns, cells, lows, strict=True)]
    excess = sum(widths) - room
    for i, (cell, low) in enumerate(zip(cells, lows, strict=True)):
        cut = max(0, min(excess, widths[i] - max(cell, low)))
        widths[i] -= cut
        excess -= cut
    while excess > 0:
        i = max(range(len(widths)), key=lambda j: widths[j] - lows[j])
        widths[i] -= 1
        excess -= 1
    return widths


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` within the terminal with its numbers and ids whole: headers and
    text columns wrap, then the table's optional columns are left out (a note names
    them); a table whose ids and numbers alone are wider than the terminal is printed
    wider than it (the terminal wraps the line; an id stays one unbroken string)."""
    _set_min_widths(table)
    hidden: list[str] = []
    for name in getattr(table, "optional", ()):
        if _widths(table, console.width) is not None:
            break
        column = next((c for c in table.columns if str(c.header) == name), None)
        if column is not None:
            table.columns.remove(column)
            for index, left in enumerate(table.columns):
                left._index = index  # rich keys padding and row styles by position
            hidden.append(name)
    widths = _widths(table, console.width)
    if widths is None:
        widths = [c.min_width or 1 for c in table.columns]
        wide = (table._extra_width + sum(widths)
                + sum(table._get_padding_width(c._index) for c in table.columns))
        console = rich_console.Console(highlight=False, width=wide, height=console.height,
                                       force_terminal=console.is_terminal,
                                       no_color=console.no_color)
    for column, got in zip(table.columns, widths, strict=True):
        column.width = got
    console.print(table)
    if hidden:
        console.print(f"(left out at this width: {', '.join(hidden)}; --json shows all)",
                      style="dim", highlight=False)


def when(ts: str | None) -> str:
    """An ISO 8601 UTC time for a table: ``2026-12-03 14:32:23`` (to the second; the
    space lets a narrow column wrap between date and time). ``-`` for none."""
    return ts[:19].replace("T", " ") if ts else "-"


def key_value_table(rows: dict[str, Any], title: str | None = None) -> Table:
    """Names and values; a value that is one word (an id, a hash) is never cut or
    wrapped, longer text wraps. Print it with ``print_table``."""
    table = rich_table.Table(title=title, box=None, show_header=False, title_justify="left",
                             title_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    texts = {key: "" if value is None else str(value) for key, value in rows.items()}
    words = [word for text in texts.values() for word in text.split()]
    table.add_column(min_width=max(map(len, words), default=1))
    for key, text in texts.items():
        table.add_row(key, text)
    return table


def usd(nanos: int, places: int = 4) -> str:
    """An exact cost for people: at least ``places`` decimals, and as many more (up to
    9, trailing zeros trimmed) as the amount needs, so a small cost never shows as
    ``$0.0000`` (``usd(7_500) == "$0.0000075"``, ``usd(1_500_000_000) == "$1.5000"``)."""
    nanos = int(nanos)
    format_usd(nanos, 0)  # the same range check
    whole, fraction = divmod(abs(nanos), 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0").ljust(places, "0")
    sign = "-" if nanos < 0 else ""
    return f"{sign}${whole}" + (f".{digits}" if digits else "")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 call``, ``2 calls``, ``1,000 conversations`` (``many`` for irregular words)."""
    return f"{num(n)} {word if n == 1 else (many or word + 's')}"


def cost_cell(nanos: int, calls: int, unpriced: int) -> str:
    """A cost for a table: ``unpriced`` when no call of the row had a price (never $0)."""
    if calls and unpriced == calls:
        return "unpriced"
    return usd(nanos)


def num(n: int) -> str:
    return f"{n:,}"


def ts_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_ts(ts_to_us(value.astimezone(UTC)))


def show_progress(as_json: bool) -> bool:
    """Progress bars only for a person watching: stderr is a terminal and not --json."""
    return not as_json and sys.stderr.isatty()


def progress_bar(*, unit: str = "items") -> Progress:
    """A transient progress bar on stderr; ``unit`` is ``items`` or ``bytes``."""
    bar = rich_progress
    columns: list[Any] = [bar.TextColumn("{task.description:<10}"), bar.BarColumn(),
                          bar.DownloadColumn() if unit == "bytes" else
                          bar.MofNCompleteColumn(), bar.TimeRemainingColumn()]
    return bar.Progress(*columns, console=stderr_console(), transient=True)


# -- dates ------------------------------------------------------------------------------
ZONE_HELP = ("IANA time zone of the dates (default: the machine's zone, from TZ or "
             "/etc/localtime; UTC if it cannot be named). A date YYYY-MM-DD is that day's "
             "midnight there (an --end date includes the day); a datetime without offset "
             "is a wall-clock time there; one with an offset (or Z) is that instant.")


@dataclass(frozen=True)
class Zone:
    """The time zone a command reads and shows its dates in: its IANA ``name`` and
    ``info``; ``machine`` when it is the machine's zone (no ``--tz`` given)."""

    name: str
    info: ZoneInfo
    machine: bool = False

    def __str__(self) -> str:
        return self.name


def _zone_name(text: str) -> str | None:
    """``text`` as an IANA zone name Python's zone database has (a path under a
    ``zoneinfo`` directory names the zone after it), else None."""
    text = text.removeprefix(":").strip()
    candidates = [text]
    if os.path.isabs(text):
        parts = os.path.realpath(text).split(os.sep)
        candidates = ["/".join(parts[i + 1:]) for i, part in enumerate(parts)
                      if part == "zoneinfo"]
    for name in candidates:
        try:
            if name and ZoneInfo(name) is not None:
                return name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return None


def machine_zone() -> str:
    """The machine's time zone name: the ``TZ`` environment variable when it is set (as
    the C library reads it: a name, ``:name`` or a zoneinfo path), else the system's
    setting (``tzlocal``: /etc/localtime, /etc/timezone …); ``UTC`` when that cannot be
    named (an empty or POSIX-rule ``TZ``, no setting)."""
    tz = os.environ.get("TZ")
    if tz is not None:  # read on every call: tzlocal caches its answer
        return _zone_name(tz) or "UTC"
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises assorted errors on a muddled setting
        return "UTC"
    return (name and _zone_name(name)) or "UTC"


class ZoneType(click.ParamType):
    """An IANA time zone name → ``Zone`` (a ``CliError``, exit 2, for an unknown one).
    ``query``: the zone groups a report, so the query engine must know it too
    (``projections.rollups.check_timezone``)."""

    name = "zone"

    def __init__(self, *, query: bool = False) -> None:
        self.query = query

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Zone:
        if isinstance(value, Zone):
            return value
        return self.zone(str(value))

    def zone(self, name: str, *, machine: bool = False) -> Zone:
        known = _zone_name(name) == name and not os.path.isabs(name)
        if known and self.query:
            from projections.rollups import RollupError, check_timezone

            try:
                check_timezone(name)
            except RollupError:
                known = False
        if not known:
            where = (" (the machine's zone, from TZ or /etc/localtime; choose one with "
                     "--tz)" if machine else "")
            raise CliError(f"--tz: unknown time zone {name!r}{where}: use an IANA name "
                           "such as 'UTC' or 'Europe/Madrid'")
        return Zone(name, ZoneInfo(name), machine)


def where_option(help_text: str) -> Callable[[F], F]:
    """``--where KEY=VALUE`` (repeatable): a metadata filter (``where_filter``)."""
    return click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
                        help=help_text)


def where_filter(texts: tuple[str, ...]) -> dict[str, str] | None:
    """``--where`` options as a metadata filter (``ledger.model.dimensions``), None when
    none is given; a ``CliError`` naming the problem otherwise."""
    from ledger.model.dimensions import DimensionNameError, parse_where_text

    if not texts:
        return None
    try:
        return parse_where_text(texts)
    except DimensionNameError as exc:
        raise CliError(str(exc)) from None


def zone_option(*, query: bool = False) -> Callable[[F], F]:
    """The ``--tz ZONE`` option of every command with date options: the command gets a
    ``Zone`` (``tz``), the machine's unless given. ``query``: the zone also groups a
    report (the query engine must know it)."""
    kind = ZoneType(query=query)

    def default(ctx: click.Context, param: click.Parameter, value: Zone | None) -> Zone:
        return value if value is not None else kind.zone(machine_zone(), machine=True)

    return click.option("--tz", "tz", type=kind, metavar="ZONE", callback=default,
                        help=ZONE_HELP)


def when_help(what: str, *, end: bool = False) -> str:
    """The help of a date option: ``what`` it is, then the one rule (in ``--tz``)."""
    bound = ("exclusive; a date YYYY-MM-DD includes that whole day" if end else
             "inclusive")
    return f"{what}: YYYY-MM-DD or ISO 8601 datetime, in the --tz zone; {bound}."


_DATE_ONLY = "%Y-%m-%d"


def parse_when(text: str, *, option: str, zone: tzinfo = UTC, end: bool = False) -> datetime:
    """An option's date bound in ``zone`` as an aware UTC datetime: ``YYYY-MM-DD`` is
    that day's midnight there (with ``end`` the next one); a datetime without an offset
    is a wall-clock time there; one with an offset is that instant
    (``ledger.model.dates.parse_bound`` for the rest). Raises ``CliError``."""
    value: Any = text
    stripped = text.strip()
    try:
        datetime.strptime(stripped, _DATE_ONLY)
        whole_day = len(stripped) == 10
    except ValueError:
        whole_day = False
    if not whole_day:
        try:
            moment = datetime.fromisoformat(stripped.replace("z", "Z"))
        except ValueError:
            moment = None  # parse_bound says what is wrong with it
        if moment is not None and moment.tzinfo is None:
            value = moment.replace(tzinfo=zone)
            if utc_instant(value) is None:
                raise CliError(f"{option}: {text!r} is out of range ({RANGE_TEXT})")
    return parse_bound(value, name=option, end=end, zone=zone, error=CliError)


def parse_window(start: str | None, end: str | None, zone: tzinfo, *, check: bool = True
                 ) -> tuple[datetime | None, datetime | None]:
    """``--start``/``--end`` in ``zone`` (``parse_when``); with ``check``, a window that
    is empty (start not before end) is a ``CliError`` (else the API says so)."""
    lo = parse_when(start, option="--start", zone=zone) if start else None
    hi = parse_when(end, option="--end", zone=zone, end=True) if end else None
    if check and lo is not None and hi is not None and lo >= hi:
        raise CliError(f"--start ({ts_text(lo)}) must be before --end ({ts_text(hi)})")
    return lo, hi


def local_text(value: datetime, zone: tzinfo) -> str:
    """An instant as a wall-clock time in ``zone`` with its offset, to the second
    (``2025-10-01 00:00:00-07:00``)."""
    return value.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def window_text(lo: datetime | None, hi: datetime | None, zone: Zone) -> str:
    """A window for people, in ``zone`` and naming it: whole days as dates, the end day
    included (``2025-10-01 – 2025-10-31 (America/Los_Angeles)``), else wall-clock times
    (``… up to …``, the end excluded)."""
    lo_local = None if lo is None else lo.astimezone(zone.info)
    hi_local = None if hi is None else hi.astimezone(zone.info)
    if all(t is None or t.time() == time() for t in (lo_local, hi_local)):
        first = "the start" if lo_local is None else lo_local.date().isoformat()
        last = "now" if hi_local is None else (hi_local.date() - timedelta(days=1)
                                               ).isoformat()
        return f"{first} ({zone})" if first == last else f"{first} – {last} ({zone})"
    first = "the start" if lo is None else local_text(lo, zone.info)
    last = "now" if hi is None else local_text(hi, zone.info)
    return f"{first} up to {last} ({zone})"
