"""AppTest: the Settings page shows every setting grouped, saves through the store, refuses bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli.main import main as cli_main
from lotr_labeler.settings import CAUTIONS, SETTINGS, Settings, grouped
from lotr_labeler.store import Store
from lotr_labeler.workspace import open_project

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "7_Settings.py")


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]


def stored(data_root: Path) -> Settings:
    with open_project(data_root, "demo") as s:
        return s.settings()


def test_every_setting_is_shown_once_in_a_group_with_its_help_and_default(empty_store: Store) -> None:
    at = page()
    keys = [s.key for _, _, members in grouped() for s in members]
    assert sorted(keys) == sorted(s.key for s in SETTINGS)
    assert [h.value for h in at.subheader] == [*(name for name, _, _ in grouped()), "Weights folder (all projects)"]
    captions = "\n".join(c.value for c in at.caption)
    for s in SETTINGS:
        assert s.help in captions
        assert f"`{s.key}`" in captions
    # The risky switch explains the risk even while it is off.
    assert any(CAUTIONS["allow_private_hosts"] in i.value for i in at.info)
    assert at.checkbox(key="set_allow_private_hosts").value is False
    assert at.number_input(key="set_download_workers").value == Settings().download_workers


def test_a_saved_group_is_read_by_the_store_and_the_confirmation_stays(empty_store: Store, data_root: Path) -> None:
    at = page()
    at.number_input(key="set_download_workers").set_value(8)
    at.checkbox(key="set_allow_private_hosts").check()
    at.number_input(key="set_read_timeout").set_value(30.0).run()
    click(at, "save_Downloads")
    got = stored(data_root)
    assert (got.download_workers, got.allow_private_hosts, got.read_timeout) == (8, True, 30.0)
    assert any("Saved 3 setting(s)" in s.value and "download_workers = 8" in s.value for s in at.success)
    # Other groups untouched; the confirmation survives an unrelated rerun; the risk is now a warning.
    assert got.page_size == Settings().page_size
    at.number_input(key="set_page_size").set_value(24).run()
    assert any("Saved 3 setting(s)" in s.value for s in at.success)
    assert any(CAUTIONS["allow_private_hosts"] in w.value for w in at.warning)


def test_a_bad_value_is_named_next_to_its_field_and_nothing_of_the_group_is_stored(
    empty_store: Store, data_root: Path
) -> None:
    at = page()
    at.number_input(key="set_download_workers").set_value(0)
    at.number_input(key="set_read_timeout").set_value(30.0).run()
    click(at, "save_Downloads")
    errors = [e.value for e in at.error]
    assert any("download_workers=0 is below its minimum 1" in e for e in errors), errors
    assert any("Nothing saved: fix download_workers" in e for e in errors), errors
    assert stored(data_root) == Settings()
    # The bad value stays in the field to be fixed; fixing it saves the group.
    assert at.number_input(key="set_download_workers").value == 0
    at.number_input(key="set_download_workers").set_value(4).run()
    click(at, "save_Downloads")
    assert not at.error
    assert (stored(data_root).download_workers, stored(data_root).read_timeout) == (4, 30.0)


def test_reset_to_default_and_the_cli_agree_with_the_page(
    empty_store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = page()
    at.number_input(key="set_page_size").set_value(96).run()
    click(at, "save_Grids")
    assert stored(data_root).page_size == 96
    assert cli_main(["--data", str(data_root), "--project", "demo", "settings", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["page_size"]["value"], rows["page_size"]["group"]) == (96, "Grids")

    click(at, "reset_page_size")
    assert stored(data_root).page_size == Settings().page_size
    assert at.number_input(key="set_page_size").value == Settings().page_size
    assert any("Reset page_size to its default" in s.value for s in at.success)

    # A change made with the CLI while the page is open shows on its next run.
    assert cli_main(["--data", str(data_root), "--project", "demo", "settings", "set", "search_delay", "3"]) == 0
    at.run()
    assert at.number_input(key="set_search_delay").value == 3.0
    assert cli_main(["--data", str(data_root), "--project", "demo", "settings", "reset", "search_delay"]) == 0
    assert stored(data_root).search_delay == Settings().search_delay


def test_every_declared_setting_has_a_named_group() -> None:
    # "Other" is the safety net for a new setting; a declared one belongs in a real group.
    assert "Other" not in [name for name, _, _ in grouped()]


def test_the_last_visits_messages_go_when_the_page_is_entered_anew(empty_store: Store) -> None:
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "home.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/7_Settings.py").run()
    at.checkbox(key="set_allow_private_hosts").check().run()
    click(at, "save_Downloads")
    assert any("Saved 1 setting(s)" in s.value for s in at.success)
    at.run()  # the same visit keeps it
    assert any("Saved 1 setting(s)" in s.value for s in at.success)
    at.switch_page("pages/3_Dataset.py").run()
    at.switch_page("pages/7_Settings.py").run()  # back later: a new visit
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Saved" in s.value for s in at.success)
    assert at.checkbox(key="set_allow_private_hosts").value is True  # the stored value, of course


@pytest.mark.slow
def test_weights_folder_is_saved_for_every_project(
    empty_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user-level weights folder: saved to the user's config (not the project), refused when missing."""
    from lotr_labeler.model import backbones

    monkeypatch.setenv(backbones.CONFIG_ENV, str(tmp_path / "config.json"))
    monkeypatch.delenv(backbones.WEIGHTS_DIR_ENV, raising=False)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "resnet18-f37072fd.pth").write_bytes(b"x")
    at = page()
    at.text_input(key="set_weights_dir").set_value(str(tmp_path / "missing")).run()
    click(at, "save_weights_dir")
    assert any("does not exist" in e.value for e in at.error)
    assert backbones.weights_dir() is None
    at.text_input(key="set_weights_dir").set_value(str(folder)).run()
    click(at, "save_weights_dir")
    assert any("serves every project" in m.value for m in at.success)
    assert backbones.weights_dir() == folder
    assert backbones.user_weights_file("resnet18") == folder / "resnet18-f37072fd.pth"
    assert any("resnet18: ✓ resnet18-f37072fd.pth" in c.value for c in page().caption)


def test_a_value_of_the_wrong_type_is_named_in_words(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI said "Setting valid_pct='abc' is not a int."."""
    assert cli_main(["settings", "set", "valid_pct", "abc"]) == 1
    assert "error: Setting valid_pct='abc' is not a whole number. Example: 20." in capsys.readouterr().err
