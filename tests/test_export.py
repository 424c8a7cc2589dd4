"""``esg export --onnx``: the smoke profile's ESG-ConvNeXt exports, ONNX Runtime agrees with PyTorch to
1e-4 (also on an image the command did not check), the check can fail, and the
batch-1 FPS table runs. Never checks a timing against a threshold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from esg_lib.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from esg_lib.export import batch1_fps, build_export_model, check_onnx, export_onnx, onnx_session  # noqa: E402


def _tiny_esg() -> torch.nn.Module:
    """Every ESG module (ELA, GAM, SimAM, GRN, PReLU, both branches) in 87k parameters."""
    torch.manual_seed(0)
    return timm.create_model("esg_convnext_atto", depths=(1, 1), dims=(16, 32), num_classes=3).eval()


@pytest.mark.slow
def test_export_cli_on_the_smoke_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "esg.onnx"
    assert main(["export", "--onnx", str(out), "--profile", "smoke", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "esg_convnext_atto, 32 px" in printed and "max |diff|" in printed
    model, size, _ = build_export_model(profile="smoke")  # same seed, same weights as the command's
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        expected = model(x).numpy()
    (got,) = onnx_session(out, threads=1).run(["logits"], {"image": x.numpy()})
    assert got.shape == (1, 9) and np.max(np.abs(got - expected)) <= 1e-4


def test_check_compares_real_outputs_and_fps_table_runs(tmp_path: Path) -> None:
    model = _tiny_esg()
    path = export_onnx(model, tmp_path / "tiny.onnx", 32)
    assert check_onnx(model, path, 32) <= 1e-4
    other = _tiny_esg()
    with torch.no_grad():
        other.get_classifier().bias.add_(0.01)  # a model that is not the exported one
    assert check_onnx(other, path, 32) > 1e-4
    rows = batch1_fps(model, 32, modes=("eager", "onnxruntime"), repeats=1, warmup=1, min_time=0.0,
                      onnx_path=path)
    assert [r["mode"] for r in rows] == ["eager", "onnxruntime"]
    assert all(r["fps"] > 0 and r["batch_size"] == 1 and r["img_size"] == 32 for r in rows)


def test_export_refuses_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export"]) == 2
    assert "nothing to do" in capsys.readouterr().err
