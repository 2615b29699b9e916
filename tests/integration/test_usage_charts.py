"""``llmring usage report --chart`` draws the report's cost as stacked bars on the
terminal, and ``--format png|svg --output FILE`` writes the same chart to a file: one bar
per day (week, month) with the day's total, stacked by the other dimension, named in a
legend; bad combinations of options are usage errors that write nothing."""

from __future__ import annotations

import struct
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.integration.test_cli import call, jsonl, llmring

COSTS = {("2025-06-01", "gpt-4o-mini"): "0.25", ("2025-06-01", "gpt-4o"): "0.75",
         ("2025-06-02", "gpt-4o-mini"): "0.5", ("2025-06-03", "gpt-4o"): "2"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("charts")
    calls = [call(n, ts=f"{day}T12:00:00Z", model=model, cost=cost)
             for n, ((day, model), cost) in enumerate(COSTS.items())]
    result = llmring(tmp / "data", "ingest", str(jsonl(tmp / "calls.jsonl", *calls)))
    assert result.exit_code == 0, result.output
    return tmp / "data"


def test_chart_on_the_terminal_has_a_bar_per_day_sized_by_its_cost(data: Path) -> None:
    result = llmring(data, "usage", "report", "--by", "day,model", "--tz", "UTC", "--chart")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Cost of default by day, model (UTC)"
    bars = {line.split()[0]: line for line in lines[1:4]}
    assert set(bars) == {"2025-06-01", "2025-06-02", "2025-06-03"}
    assert bars["2025-06-01"].rstrip().endswith("$1.00")
    assert bars["2025-06-03"].rstrip().endswith("$2.00")

    def drawn(line: str) -> int:
        return sum(1 for ch in line if ch in "█▓")

    # gpt-4o (the larger series) is drawn first with "█", gpt-4o-mini with "▓"
    assert drawn(bars["2025-06-03"]) == 2 * drawn(bars["2025-06-01"])
    assert bars["2025-06-01"].count("█") == 3 * bars["2025-06-01"].count("▓")
    assert "▓" not in bars["2025-06-03"] and "█" not in bars["2025-06-02"]
    assert lines[4].startswith("model: ██ gpt-4o  ▓▓ gpt-4o-mini")


def test_svg_file_is_the_same_chart(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cost.svg"
    result = llmring(data, "usage", "report", "--by", "model,day", "--tz", "UTC",
                     "--format", "svg", "--output", str(out))
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    texts = {t.text for t in ElementTree.fromstring(svg).iter()
             if t.tag.endswith("text") and t.text}
    assert {"2025-06-01", "2025-06-02", "2025-06-03", "gpt-4o", "gpt-4o-mini",
            "Cost of default by model, day (UTC)"} <= texts
    again = tmp_path / "again.svg"
    llmring(data, "usage", "report", "--by", "model,day", "--tz", "UTC", "--format", "svg",
            "-o", str(again))
    assert again.read_bytes() == out.read_bytes()  # the same report, the same file
    assert not list(tmp_path.glob("*.part"))


def test_png_file_is_an_image(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cost.png"
    result = llmring(data, "usage", "report", "--by", "day", "--format", "png", "-o",
                     str(out))
    assert result.exit_code == 0, result.output
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 600 and height >= 400


@pytest.mark.parametrize(("args", "message"), [
    (("--format", "png"), "give both --format and --output FILE"),
    (("--output", "x.png"), "give both --format and --output FILE"),
    (("--chart", "--json"), "choose one of --csv, --json, --chart and --format"),
    (("--chart", "--format", "svg", "-o", "x.svg"), "choose one of"),
    (("--format", "svg", "-o", "x.svg", "--start", "2030-01-01"), "no chart to write"),
])
def test_bad_chart_options_are_refused_and_write_nothing(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        args: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = llmring(data, "usage", "report", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_unwritable_output_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    result = llmring(data, "usage", "report", "--format", "png", "-o",
                     str(tmp_path / "missing" / "cost.png"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
