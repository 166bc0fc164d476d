"""The one output-folder policy (hatrade.io.folders): new, empty, or a manifest of the same
kind; only listed files are replaced; nothing is left behind on failure."""

from __future__ import annotations

import json

import pytest

from hatrade.io.folders import (
    MANIFEST,
    OutputFolderError,
    prepare_output,
    read_manifest,
    write_manifest,
)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_new_folder_replaced_whole_with_a_manifest(tmp_path):
    out = tmp_path / "a" / "b"
    folder = prepare_output(out, "solve")
    with folder.replace() as tmp:
        (tmp / "summary.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.csv").write_text("1")
    m = read_manifest(out)
    assert m["kind"] == "solve" and m["files"] == ["sub/x.csv", "summary.json"]
    # the same kind may replace it; the old files go, the new ones come
    folder = prepare_output(out, "solve")
    with folder.replace() as tmp:
        (tmp / "trade.csv").write_text("2")
    assert _names(out) == [MANIFEST, "trade.csv"]
    assert _names(tmp_path / "a") == ["b"]  # no temporary folders left


def test_failure_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    with prepare_output(out, "solve").replace() as tmp:
        (tmp / "summary.json").write_text("old")
    with pytest.raises(RuntimeError):
        with prepare_output(out, "solve").replace() as tmp:
            (tmp / "summary.json").write_text("half")
            raise RuntimeError("boom")
    assert (out / "summary.json").read_text() == "old"
    assert _names(tmp_path) == ["out"]
    with pytest.raises(RuntimeError):
        with prepare_output(tmp_path / "new", "solve").replace():
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["out"]


def test_other_files_and_other_kinds_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"holds other files.*previous 'hatrade solve'"):
        prepare_output(out, "solve")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match="not a folder"):
        prepare_output(tmp_path / "f", "solve")
    other = tmp_path / "cf"
    with prepare_output(other, "counterfactual").replace() as tmp:
        (tmp / "summary.json").write_text("{}")
    with pytest.raises(OutputFolderError, match="'counterfactual' output"):
        prepare_output(other, "solve")
    # a file the user added to a hatrade folder is never deleted by a swap
    folder = prepare_output(other, "counterfactual")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"notes\.txt, which hatrade did not write"):
        with folder.replace():
            pass
    with pytest.raises(OutputFolderError, match=r"notes\.txt, which hatrade did not write"):
        prepare_output(other, "counterfactual")  # refused before any work
    assert (other / "notes.txt").read_text() == "mine"


def test_legacy_folder_is_adopted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"kind": "solve"}))
    (out / "trade.csv").write_text("x")
    folder = prepare_output(out, "solve")
    assert folder.listed == {"summary.json", "trade.csv"}
    with pytest.raises(OutputFolderError):
        prepare_output(out, "efficient")


def test_in_place_session_claims_and_cleans_up(tmp_path):
    out = tmp_path / "batch"
    folder = prepare_output(out, "batch", update=True)
    with folder.session():
        folder.claim("runs/A/")
        (out / "runs" / "A").mkdir(parents=True)
        (out / "runs" / "A" / "summary.json").write_text("{}")
        folder.write_json("batch_summary.json", {"n": 1})
    m = read_manifest(out)
    assert m["files"] == ["batch_summary.json", "runs/A/"]
    # resumed: listed files may be replaced, an unlisted existing one may not
    (out / "notes.txt").write_text("mine")
    folder = prepare_output(out, "batch", update=True)
    with folder.session():
        folder.write_text("batch_summary.json", "{}")
        with pytest.raises(OutputFolderError, match="notes.txt"):
            folder.write_text("notes.txt", "theirs")
    assert (out / "notes.txt").read_text() == "mine"
    # a sub-folder whose files are all listed may be claimed whole; one with others not
    (out / "runs" / "B").mkdir()
    (out / "runs" / "B" / "x.txt").write_text("mine")
    folder = prepare_output(out, "batch", update=True)
    folder.listed.add("runs/A/summary.json")
    folder.listed.discard("runs/A/")
    folder.claim("runs/A/")
    with pytest.raises(OutputFolderError, match="runs/B/x.txt"):
        folder.claim("runs/B/")
    # a session that fails before writing anything leaves no folder behind
    new = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError):
        with prepare_output(new, "batch", update=True).session():
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()


def test_write_manifest_roundtrip(tmp_path):
    write_manifest(tmp_path, "calibrate", ["b", "a", "a"])
    m = read_manifest(tmp_path)
    assert m["kind"] == "calibrate" and m["files"] == ["a", "b"] and m["hatrade_version"]
    (tmp_path / MANIFEST).write_text("not json")
    assert read_manifest(tmp_path) is None
