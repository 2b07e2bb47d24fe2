"""The command line: every foundation command, its output, its failure status and message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import image_bytes, shape_image

from lotr_labeler.cli import main

VENV_BIN = Path(sys.executable).parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def project(data_root: Path, shapes_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert run(capsys, "init", "--template", "empty")[0] == 0
    assert run(capsys, "import", "folder", str(shapes_dir))[0] == 0
    return data_root / "lotr-races"


def test_init_default_template_and_status(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init")
    assert code == 0 and "lotr-races" in out and "7 class" in out
    doc = run_json(capsys, "status")
    assert isinstance(doc, dict)
    assert doc["project"] == "lotr-races"
    assert [r["class"] for r in doc["classes"]][:2] == ["Ainur", "Elves"]
    assert all("id" in r for r in doc["classes"])
    code, _, err = run(capsys, "init")
    assert code == 1 and err.startswith("error: ") and "exists already" in err and err.count("\n") == 1


def test_init_other_project_name_and_bad_template(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--project", "birds", "init", "--template", "empty")[0] == 0
    assert (data_root / "birds" / "project.sqlite").exists()
    with pytest.raises(SystemExit) as exc:
        main(["init", "--template", "nope"])
    assert exc.value.code == 2


def test_status_without_project_fails_clearly(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status")
    assert code == 1 and out == "" and "lotr-labeler init" in err


def test_classes_commands(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "classes", "add", "Ents", "--names", "Treebeard, Quickbeam", "--template", "{name} ent")[0] == 0
    rows = run_json(capsys, "classes", "list")
    assert isinstance(rows, list)
    ents = next(r for r in rows if r["name"] == "Ents")
    assert ents["queries"] == ["Treebeard ent", "Quickbeam ent"] and "id" in ents
    assert run(capsys, "classes", "set", "Ents", "--template", "{name} tree")[0] == 0
    assert run_json(capsys, "classes", "list")[-1]["queries"][0] == "Treebeard tree"  # type: ignore[index]

    code, _, err = run(capsys, "classes", "add", "ents")
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "classes", "add", "a/b")
    assert code == 1 and "'/'" in err

    assert run(capsys, "classes", "rename", "circle", "Rounds")[0] == 0
    assert (project / "images" / "Rounds").is_dir() and not (project / "images" / "circle").exists()
    code, _, err = run(capsys, "classes", "rm", "Rounds")
    assert code == 1 and "--force" in err
    assert run(capsys, "classes", "rm", "Rounds", "--force")[0] == 0
    assert "Rounds" not in [r["name"] for r in run_json(capsys, "classes", "list")]  # type: ignore[union-attr]
    code, _, err = run(capsys, "classes", "rm", "nope")
    assert code == 1 and "No class 'nope'" in err


def test_images_relabel_delete_undo(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "images", "list", "--class", "circle")
    assert isinstance(rows, list) and len(rows) == 6
    first = rows[0]
    assert Path(first["path"]).exists() and first["id"]
    code, out, _ = run(capsys, "relabel", str(first["id"]), "square")
    assert code == 0 and "1 image" in out
    assert (project / "images" / "square" / f"{first['id']}.jpg").exists()
    assert run(capsys, "delete", str(first["id"]))[0] == 0
    assert (project / "trash" / f"{first['id']}.jpg").exists()
    trash = run_json(capsys, "images", "list", "--deleted")
    assert [r["id"] for r in trash] == [first["id"]]  # type: ignore[union-attr]
    code, out, _ = run(capsys, "undo")
    assert code == 0 and "deleted" in out
    code, out, _ = run(capsys, "undo")
    assert code == 0 and "relabeled" in out
    assert Path(first["path"]).exists()
    history = run_json(capsys, "history")
    assert [e["kind"] for e in history][:2] == ["delete", "relabel"]  # type: ignore[index]

    code, _, err = run(capsys, "relabel", "9999", "square")
    assert code == 1 and "No image with id 9999" in err
    code, _, err = run(capsys, "relabel", str(first["id"]), "hexagon")
    assert code == 1 and "No class 'hexagon'" in err


def test_undo_with_empty_history(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init", "--template", "empty")
    code, _, err = run(capsys, "undo")
    assert code == 1 and "Nothing to undo" in err


@pytest.mark.slow
def test_import_zip_and_urls_and_candidates(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Ents/a.png", image_bytes(shape_image("circle", 900)))
        zf.writestr("../evil.png", image_bytes(shape_image("circle", 901)))
    report = run_json(capsys, "import", "zip", str(archive))
    assert isinstance(report, dict)
    assert len(report["added"]) == 1 and report["rejected"][0]["reason"].startswith("refused")
    assert not (tmp_path / "evil.png").exists()

    csv_file = tmp_path / "urls.csv"
    csv_file.write_text("url,label\nhttp://x/1.jpg,circle\nhttp://x/2.jpg,square\nnot-a-url,circle\n")
    code, out, err = run(capsys, "import", "urls", str(csv_file))
    assert code == 0 and "2 candidate(s) added" in out and "line 4" in err
    cands = run_json(capsys, "candidates", "list")
    assert isinstance(cands, list) and [c["state"] for c in cands] == ["pending", "pending"]
    ids = [str(c["id"]) for c in cands]
    assert run(capsys, "candidates", "accept", ids[0])[0] == 0
    assert run(capsys, "candidates", "reject", "--class", "square", "--to", "circle")[0] == 0
    states = {c["id"]: (c["state"], c["label"]) for c in run_json(capsys, "candidates", "list")}  # type: ignore[union-attr]
    assert states == {int(ids[0]): ("accepted", "circle"), int(ids[1]): ("rejected", "circle")}
    assert [c["id"] for c in run_json(capsys, "candidates", "list", "--state", "rejected")] == [int(ids[1])]  # type: ignore[union-attr]
    code, _, err = run(capsys, "candidates", "accept")
    assert code == 1 and "--all" in err
    assert run(capsys, "candidates", "reset", "--all")[0] == 0  # only undecided/failed ones: none
    code, _, err = run(capsys, "import", "zip", str(tmp_path / "missing.zip"))
    assert code == 1 and "missing.zip" in err
    junk = tmp_path / "junk" / "circle"
    junk.mkdir(parents=True)
    (junk / "notes.txt").write_text("not a picture")
    (junk / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    code, out, err = run(capsys, "import", "folder", str(junk.parent))  # everything refused: not a success
    assert code == 1 and "0 image(s) added" in out and "error: nothing was imported: 2 item(s) refused" in err
    assert main(["import", "folder", str(junk.parent), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["added"] == []


def test_export_dataset(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle.zip"
    code, text, _ = run(capsys, "export", "dataset", str(out))
    assert code == 0 and "18 image" in text
    with zipfile.ZipFile(out) as zf:
        assert "manifest.csv" in zf.namelist() and len(zf.namelist()) == 19
    code, _, err = run(capsys, "export", "dataset", str(tmp_path / "bundle.tar"))
    assert code == 1 and ".zip" in err


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exported_zip_and_stored_images_get_the_mode_of_a_new_file(
    data_root: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], umask: int
) -> None:
    """Written through a temp file and a rename, they were mkstemp's owner-only 0600: a zip made to be
    shared, and the images, now get 0666 less the umask, as a file the user wrote directly would."""
    old = os.umask(umask)
    try:
        assert run(capsys, "init", "--template", "empty")[0] == 0
        assert run(capsys, "import", "folder", str(shapes_dir))[0] == 0
        out = tmp_path / "bundle.zip"
        assert run(capsys, "export", "dataset", str(out))[0] == 0
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert out.stat().st_mode & 0o777 == expected
    stored = [p for p in (data_root / "lotr-races" / "images").rglob("*") if p.is_file()]
    assert stored and {p.stat().st_mode & 0o777 for p in stored} == {expected}


def test_settings(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "settings", "set", "valid_pct", "25")[0] == 0
    rows = {r["id"]: r["value"] for r in run_json(capsys, "settings", "list")}  # type: ignore[union-attr]
    assert rows["valid_pct"] == 25
    code, _, err = run(capsys, "settings", "set", "valid_pct", "abc")
    assert code == 1 and "'abc'" in err
    code, _, err = run(capsys, "settings", "set", "valid_pct", "90")
    assert code == 1 and "maximum" in err


@pytest.mark.slow
def test_console_script_and_module_entry_points(tmp_path: Path) -> None:
    env = {**os.environ, "LOTR_LABELER_DATA": str(tmp_path / "d")}
    script = VENV_BIN / "lotr-labeler"
    assert script.exists(), "the console script is installed in the venv"
    done = subprocess.run([str(script), "init"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "lotr_labeler", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and json.loads(done.stdout)["project"] == "lotr-races"
    done = subprocess.run(
        [str(script), "--project", "nope", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.startswith("error: No project 'nope'")


@pytest.mark.slow
def test_json_listing_into_a_closed_pipe_exits_quietly(project: Path) -> None:
    """`images list --json | head`: the reader is gone before the CLI writes; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lotr_labeler", "images", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LOTR_LABELER_DATA": str(project.parent)},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `head` exiting: every write now fails with EPIPE
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 1
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_the_cli_and_the_job_specs_start_without_the_http_client() -> None:
    """httpx (0.3 s here) loads when something is fetched, not at every command's start (`status` is
    benchmarked as a whole process) nor with the pages that import the job specs."""
    import subprocess
    import sys

    code = (
        "import sys, lotr_labeler.cli.main, lotr_labeler.jobs.specs; "
        "print(sorted(m for m in ('httpx', 'torch', 'fastai', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_runs_rm_asks_for_force_before_deleting_the_current_model(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runs rm` deleted the current (and only) model at once, and the `undo` a user tried next took back
    the project's import instead: nothing brings a run back."""
    from lotr_labeler.model import runs
    from lotr_labeler.store import Store

    with Store(project) as store:
        made = runs.finish_run(store, runs.create_run(store, {}).id, "done", vocab=store.class_names())
        assert runs.current_run(store).id == made.id  # type: ignore[union-attr]
    code, _, err = run(capsys, "runs", "rm", made.id)
    assert code == 1 and "is the current model" in err and "--force" in err
    assert made.path.exists()
    code, out, _ = run(capsys, "runs", "rm", made.id, "--force")
    assert code == 0 and "not in the undo history" in out and not made.path.exists()


def test_global_options_after_the_command_as_before_it(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --data D``, as people type it, is ``--data D status``; in nested commands too, and the
    value after the command wins over one before it. Unset after the command, the one before it stays."""
    data = str(project.parent)
    other = tmp_path / "elsewhere"
    before = run_json(capsys, "--data", data, "--project", project.name, "status")
    after = run_json(capsys, "status", "--data", data, "--project", project.name)
    assert before == after and isinstance(after, dict) and after["project"] == project.name
    listed = run_json(capsys, "classes", "list", "--project", project.name, "--data", data)
    assert isinstance(listed, list) and [c["name"] for c in listed] == [r["class"] for r in after["classes"]]
    assert run_json(capsys, "--data", str(other), "status", "--data", data) == after  # the later one
    code, _, err = run(capsys, "--data", str(other), "status")  # the one before it, when none after
    assert code == 1 and str(other) in err
    proc = subprocess.run(  # the real command line, from another working directory
        [sys.executable, "-m", "lotr_labeler", "images", "list", "--json", "--data", data, "-v"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == sum(int(r["images"]) for r in after["classes"])
