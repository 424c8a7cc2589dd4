"""``esg data ...`` through the real command-line entry point."""
from __future__ import annotations

import json
import shutil

import pytest

from esg_lib.cli import main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ESG_NEU_CLS_64", raising=False)


def test_verify_x_sdd_on_a_fresh_clone(capsys):
    assert main(["data", "verify", "x-sdd"]) == 0
    out = capsys.readouterr().out
    assert "red iron" in out and "397" in out and "OK: 1360 images, 7 classes" in out
    assert "byte-identical groups: 9" in out


def test_verify_says_exactly_what_differs(tmp_path, monkeypatch, capsys):
    import esg_lib.data.dataset as ds

    copy = tmp_path / "x"
    shutil.copytree(ds.embedded_dir(), copy)
    monkeypatch.setattr(ds, "embedded_dir", lambda: copy)
    (copy / "red iron" / "2078.jpg").unlink()
    assert main(["data", "verify"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "red iron/2078.jpg" in out and "<-- differs" in out


def test_verify_a_folder_with_notes(tmp_path, capsys):
    from esg_lib.data.testing import make_folder_dataset

    root = make_folder_dataset(tmp_path / "mine", {"a": 3, "b": 2})
    (root / "a" / "README").write_text("hi")
    (root / "b" / "bad.png").write_bytes(b"nope")
    assert main(["data", "verify", str(root), "--decode"]) == 1
    out = capsys.readouterr().out
    assert "skipped non-image file a/README" in out and "cannot decode: b/bad.png" in out


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "verify", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("esg data: error: ") and "missing" in err and "\n" not in err
    assert main(["data", "fetch", "neu-cls-64", "--source", str(tmp_path / "nothing.zip")]) == 2
    assert "not found" in capsys.readouterr().err


def test_audit_prints_zero_and_nonzero(capsys):
    assert main(["data", "audit", "--max-images", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["leak-free"]["test_leaked"] == 0
    assert result["augment-then-group-split"]["test_leaked"] == 0
    assert result["augment-then-split"]["test_leaked"] > 0
    assert main(["data", "audit", "--protocol", "leak-free"]) == 0
    assert "leak-free" in capsys.readouterr().out


def test_split_writes_a_manifest_that_audits_clean(tmp_path, capsys):
    out = tmp_path / "split.tsv"
    assert main(["data", "split", "--seed", "2", "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "path\tclass\tsplit\tsha256\tsource"
    capsys.readouterr()
    assert main(["data", "audit", "--manifest", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(out)]["test_leaked"] == 0


def test_info_and_list(capsys):
    assert main(["data", "info", "neu-cls-64"]) == 0
    out = capsys.readouterr().out
    assert "oil stains" in out and "7226" in out and "ESG_NEU_CLS_64" in out
    assert main(["data", "info", "x-sdd"]) == 0
    assert "red tin" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "embedded" in out and "esg data fetch neu-cls-64" in out
