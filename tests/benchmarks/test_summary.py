"""benchmarks/results/summary.{md,json} are what `python -m benchmarks.summarize` makes of the committed
JSON (a re-run benchmark without a regenerated summary fails here), and its ratios are the rows'."""
import json
import math
import shutil

import pytest

from benchmarks import summarize

RESULTS = summarize.RESULTS


def test_committed_summary_is_what_the_json_gives():
    for name, text in summarize.render(RESULTS).items():
        committed = (RESULTS / name).read_text()
        assert committed == text, f"benchmarks/results/{name} is stale: run python -m benchmarks.summarize"


def test_a_ratio_computed_by_hand_from_the_rows():
    """Sub-pixel vs lax.conv_transpose on B16 32x32 64->32 k4 s2: 38.482 / 11.465 ms in kernels_cpu.md;
    its geometric mean over the four stride-2 shapes is the benchmark's own summary figure."""
    data = json.loads((RESULTS / "summary.json").read_text())
    row = next(c for c in data["kernels"]["comparisons"] if c["vs"] == "lax.conv_transpose"
               and c["group"] == "conv_transpose s2")
    assert row["per_shape"]["B16 32x32 64->32 k4 s2"] == pytest.approx(38.482 / 11.465, rel=1e-4)
    kernels = json.loads((RESULTS / "kernels.json").read_text())
    assert row["geomean"] == pytest.approx(kernels["summary"]["subpixel_vs_lax_s2"], rel=1e-9)
    assert row["geomean"] == pytest.approx(math.prod(row["per_shape"].values()) ** 0.25, rel=1e-12)
    # The sampling goal's cell: images/s over images/s, as the benchmark itself computed it.
    sampling = json.loads((RESULTS / "sampling.json").read_text())
    cell = next(d for d in data["sampling"]["ddim50_b16"] if d["model"] == "digits" and d["guidance"] == "none")
    own = sampling["summary"]["ddim50_b16_digits_unguided_fused_vs_diffusers"]  # rounded to 3 decimals
    assert cell["fused_vs_diffusers"] == pytest.approx(own, abs=1e-3)
    # fastest round: diffusers' best 50-step run 14.77 s against the fused chain's best 3.327 s
    assert cell["fused_vs_diffusers_fastest_round"] == pytest.approx(14.7718 / 3.3272, rel=1e-3)


def test_check_flags_a_stale_summary(tmp_path):
    for name in ("kernels.json", "sampling.json", "summary.md", "summary.json"):
        shutil.copy(RESULTS / name, tmp_path / name)
    assert summarize.main(["--results", str(tmp_path), "--check"]) == 0
    kernels = json.loads((tmp_path / "kernels.json").read_text())
    kernels["rows"][0]["median_ms"] *= 2  # a re-run benchmark whose summary was not regenerated
    (tmp_path / "kernels.json").write_text(json.dumps(kernels))
    assert summarize.main(["--results", str(tmp_path), "--check"]) == 1
    assert summarize.main(["--results", str(tmp_path)]) == 0
    assert summarize.main(["--results", str(tmp_path), "--check"]) == 0


def test_missing_results_is_one_sentence(tmp_path, capsys):
    assert summarize.main(["--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("(python -m benchmarks.kernels).")
    assert not list(tmp_path.iterdir())  # nothing half-written
