"""experiments.unclip_prior_retrieval: its retrieval arithmetic on hand-made embeddings, and the command
on a quick unclip run (the files, one row per style and guidance, rates that hang together)."""
import json

import numpy as np
import pytest

from experiments import unclip_prior_retrieval as upr


def test_retrieval_and_tie_ceiling_by_hand():
    keys = np.eye(4)
    # rows 0 and 1 find themselves, row 2 finds scene 3 (same caption "b"), row 3 finds scene 0 ("a" != "b")
    queries = keys[[0, 1, 3, 0]]
    captions = ["a", "c", "b", "b"]
    assert upr.retrieval(queries, keys, captions) == {"own_image_rate": 0.5, "same_caption_rate": 0.75}
    # "a" and "c" are unique, the two "b" scenes share theirs: (1 + 1 + 1/2 + 1/2) / 4
    assert upr.tie_ceiling(captions) == pytest.approx(0.75)


def test_command_on_a_quick_run(unclip_run, tmp_path):
    out = tmp_path / "r"
    assert upr.main(["--workdir", unclip_run, "--guidances", "1", "2", "--num", "64", "--out", str(out)]) == 0
    result = json.loads((out / "unclip_prior_retrieval.json").read_text())
    rows = result["rows"]
    assert [(r["style"], r["prior_guidance"]) for r in rows] == [("full", 1.0), ("full", 2.0),
                                                                ("position", 1.0), ("position", 2.0)]
    for r in rows:
        assert r["num_scenes"] == 64
        # the own scene has the own caption: a same-caption hit is at least as frequent
        assert 0.0 <= r["own_image_rate"] <= r["same_caption_rate"] <= 1.0
        assert 1 / 64 <= r["own_image_ceiling"] <= 1.0
        assert -1.0 <= r["cosine_other"] <= 1.0 and -1.0 <= r["cosine_own"] <= 1.0
    # the text-query reference does not depend on the prior's guidance
    assert rows[0]["text_query_own_image_rate"] == rows[1]["text_query_own_image_rate"]
    md = (out / "unclip_prior_retrieval.md").read_text()
    assert md.count("\n| full |") == 2 and md.count("\n| position |") == 2
    assert "--guidances 1 2 --num 64" in result["meta"]["command"]


def test_a_run_of_another_task_is_one_sentence(tmp_path, classifier_run):
    with pytest.raises(SystemExit, match="is a classifier run; --workdir must name a trained unclip run"):
        upr.main(["--workdir", classifier_run, "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
