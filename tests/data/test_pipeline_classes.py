"""data.classes: a task's training split narrowed to some labels (num_classes kept, the eval split
whole, batches still a pure function of seed and step), and bad values as one sentence."""
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen import data
from jaxgen.cli import main as cli
from jaxgen.data.pipeline import DataError, Dataset, select_classes
from jaxgen.train import loop

KEPT = (0, 1, 2, 3, 4, 5, 6, 7, 8)


def test_select_classes_keeps_exactly_the_requested_labels_in_their_order():
    full = data.load("digits", "train")
    narrowed = select_classes(full, (7, 2))
    keep = np.isin(full.arrays["label"], (2, 7))
    for key in full.arrays:
        assert np.array_equal(narrowed.arrays[key], full.arrays[key][keep])
        assert not narrowed.arrays[key].flags.writeable
    assert narrowed.num_examples == int(keep.sum()) and set(np.unique(narrowed.arrays["label"])) == {2, 7}
    assert (narrowed.num_classes, narrowed.classes, narrowed.num_levels) == (10, (2, 7), 17)
    # the cached full split is left whole, and None is the split itself
    assert data.load("digits", "train") is full and full.num_examples == 1437 and full.classes is None
    assert select_classes(full, None) is full


def test_a_task_trains_on_the_classes_and_evaluates_on_the_whole_split():
    config = config_lib.load("diffusion_digits_class:quick", [f"--config.data.classes={KEPT}"])
    task = loop.make_task(config)
    assert task.num_classes == 10 and task.dataset.num_classes == 10  # a row for the held-out class
    assert task.dataset.classes == KEPT and 9 not in task.dataset.arrays["label"]
    steps_per_epoch = task.dataset.num_examples // config.train.batch_size
    labels = np.concatenate([task.host_batch(s)["label"] for s in range(steps_per_epoch + 3)])  # past an epoch
    assert set(np.unique(labels)) == set(KEPT)
    test = task.eval_dataset()
    assert test.num_examples == 360 and set(np.unique(test.arrays["label"])) == set(range(10))
    # The batch of a step is a pure function of (seed, step): a second task (a resumed run) replays it,
    # and it is the documented order over the narrowed split.
    again = loop.make_task(config)
    for step in (0, 5, steps_per_epoch + 1):
        a, b = task.host_batch(step), again.host_batch(step)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert np.array_equal(a["label"], task.dataset.batch(config.seed, step, config.train.batch_size)["label"])


def test_every_config_has_data_classes_none_and_every_class_by_default():
    for name in ("classifier_digits", "vae_digits", "diffusion_digits_class"):
        config = config_lib.load(f"{name}:quick")
        assert config.data.classes is None
    config = config_lib.load("classifier_digits:quick", ["--config.data.classes=(9,)"])
    assert tuple(config.data.classes) == (9,)
    assert loop.make_task(config_lib.load("classifier_digits:quick")).dataset.num_examples == 1437


@pytest.mark.parametrize("value, message", [
    ("()", r"^data.classes must be None \(every class\) or a non-empty tuple of class labels such as \(9,\)"),
    ("9", r"^data.classes must be None .*, not 9\.$"),
    ("(-1,)", r"^data.classes must be None .*, not \(-1,\)\.$"),
    ("('a',)", r"^data.classes must be None .*, not \('a',\)\.$"),
    ("(3,1,3)", r"^data.classes lists label 3 twice; list each class once\.$"),
])
def test_bad_class_lists_are_config_errors(value, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.load("diffusion_digits_class:quick", [f"--config.data.classes={value}"])


def test_labels_the_dataset_lacks_are_data_errors():
    with pytest.raises(DataError, match=r"^data.classes names label 10, which is not a class of digits "
                                        r"\(its labels are 0\.\.9\)\.$"):
        loop.make_task(config_lib.load("diffusion_digits_class:quick", ["--config.data.classes=(10,)"]))
    unlabelled = Dataset(name="toy", split="train", arrays={"image": np.zeros((4, 2, 2, 1), np.uint8)},
                         num_examples=4, num_levels=256, num_classes=None)
    with pytest.raises(DataError, match=r"^data.classes keeps examples by their label, but toy:train has no "
                                        r"'label' feature; leave data.classes at None"):
        select_classes(unlabelled, (0,))
    labelled = Dataset(name="toy", split="train", arrays={"label": np.array([0, 0, 2])}, num_examples=3,
                       num_levels=256, num_classes=3)
    with pytest.raises(DataError, match=r"^data.classes keeps class 1, but toy:train has no example of it\.$"):
        select_classes(labelled, (0, 1))
    with pytest.raises(DataError, match=r"^data.classes must list at least one class"):
        select_classes(labelled, ())
    with pytest.raises(DataError, match=r"^the global batch size 3 is larger than the 2 examples of toy:train that "
                                        r"data.classes \(0,\) keeps\.$"):
        select_classes(labelled, (0,)).batch(0, 0, 3)


def test_the_cli_refuses_a_bad_class_with_exit_2_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli(["train", "diffusion_digits_class:quick", "--workdir", str(workdir), "--quiet",
                "--config.data.classes=(10,)"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jaxgen: error: data.classes names label 10, which is not a class of digits (its labels are 0..9)."]
    assert not workdir.exists()
