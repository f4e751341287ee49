"""Smoke run of the input-pipeline benchmark: `python -m benchmarks.input_pipeline --quick`, in
process (digits, one host-batch size, vae_digits:quick through every feed)."""
import json

from benchmarks import input_pipeline


def test_input_pipeline_quick_writes_json_and_markdown(tmp_path):
    input_pipeline.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "input_pipeline.json").read_text())
    host = result["host_batch"]
    assert [(r["dataset"], r["batch"], r["features"]) for r in host] == [("digits", 32, "image"), ("digits", 32, "all")]
    assert all(r["in_memory_ms"] > 0 and r["streamed_ms"] > 0 for r in host)
    steps = result["train_step"]
    assert [r["feed"] for r in steps] == list(input_pipeline.FEEDS)
    assert all(r["config"] == "vae_digits:quick" and r["ms_per_step"] > 0 for r in steps)
    assert steps[0]["vs_baseline"] == 1.0
    md = (tmp_path / "input_pipeline.md").read_text()
    assert "| digits | 32 | image |" in md and "| vae_digits:quick | 32 | streamed + prefetch |" in md
