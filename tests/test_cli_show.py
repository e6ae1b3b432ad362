"""``loopcall show``: a run named by id or prefix, by its run.json, or by its run folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.models import Case, Persona, Run, Turn
from harness.store import RunStore

RUN_ID = "3f2a9c1e-0000-4000-8000-00000000abcd"


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A store under ``tmp_path/elsewhere`` holding one run; returns the store's root."""
    run = Run(
        id=RUN_ID,
        channel="sip",
        target="sip:agent@127.0.0.1:5090",
        case=Case(name="Book a cleaning", persona=Persona(name="Alex")),
        created_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        status="completed",
        turns=[Turn(role="agent", text="Acme Dental.", start_ms=300, end_ms=1200)],
    )
    root = tmp_path / "elsewhere"
    RunStore(root).save(run)
    return root


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["show", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("form", ["run.json", "folder"])
def test_show_takes_a_run_json_or_a_run_folder(
    stored: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.chdir(stored.parent)  # no ./runs here: the path alone says where the run is
    folder = Path(stored.name) / RUN_ID  # relative, as typed
    path = folder / "run.json" if form == "run.json" else folder
    code, out, _ = _show(capsys, str(path))
    assert code == 0
    assert json.loads(out)["id"] == RUN_ID
    code, out, _ = _show(capsys, str(path), "--view", "text")
    assert code == 0 and "Acme Dental." in out


def test_show_still_takes_an_id_prefix_under_out(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _show(capsys, RUN_ID[:6], "--out", str(stored), "--view", "yappr")
    assert code == 0
    assert json.loads(out)["id"] == RUN_ID


def test_show_says_clearly_what_is_not_a_run(
    stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = _show(capsys, str(empty))
    assert (code, out) == (2, "")
    assert "no run.json" in err and "empty" in err
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}', encoding="utf-8")
    code, out, err = _show(capsys, str(other))
    assert (code, out) == (2, "")
    assert "not a loopcall run" in err and "other.json" in err
    code, _, err = _show(capsys, str(tmp_path / "missing" / "run.json"))
    assert code == 2 and "no such file" in err
    code, _, err = _show(capsys, "zzzz", "--out", str(stored))
    assert code == 2 and "no run matching 'zzzz'" in err


def test_show_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["show", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "run.json" in text and "run folder" in text
    assert "--out OUT where runs are stored" in text
