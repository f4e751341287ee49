"""`python -m benchmarks.accelerator --smoke`: every part runs at tiny sizes on CPU and writes its rows."""
import json

from benchmarks import accelerator


def test_smoke_run_writes_a_row_per_part(tmp_path, capsys):
    # bfloat16 only: its paths (the cast inputs of the kernel groups, the bf16 sampler network) are
    # the ones float32 does not exercise, and one dtype keeps this test inside its time budget.
    assert accelerator.main(["--smoke", "--dtypes", "bfloat16", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "accelerator.json").read_text())
    assert set(payload["parts"]) == set(accelerator.PARTS)
    assert all(p["status"] == "ok" for p in payload["parts"].values()), payload["parts"]
    rows = payload["rows"]
    assert {r["part"] for r in rows} == set(accelerator.PARTS)
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    step = [r for r in rows if r["part"] in ("families", "ddpm_cifar_unet")]
    assert all(r["dtype"] == "bfloat16" and r["flops_per_step"] > 0 and 0 < r["mfu"] < 10 for r in step)
    assert any(r["part"] == "kernels" and r["group"] == "unet forward+backward" for r in rows)
    assert [r["summary"] for r in rows if r["part"] == "tests"][0].startswith("1 passed")
    md = (tmp_path / "accelerator.md").read_text()
    for heading in ("## Goals", "## Train steps", "## Kernels", "## Sampling", "## Tests on the device"):
        assert heading in md
    assert "FLOPs per step" in capsys.readouterr().out


def test_budget_and_parts_selection(tmp_path):
    # a spent budget skips every selected part, each with its own row; unselected parts are absent
    assert accelerator.main(["--smoke", "--parts", "kernels,sampling", "--budget_s", "0",
                             "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "accelerator.json").read_text())
    assert {k: v["status"] for k, v in payload["parts"].items()} == {"kernels": "skipped", "sampling": "skipped"}
    assert accelerator.main(["--smoke", "--parts", "nope", "--out", str(tmp_path)]) == 2


def test_slug_names_the_results_folder():
    assert accelerator.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert accelerator.slug("TPU v5 lite") == "tpu-v5-lite"
