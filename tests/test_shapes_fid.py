"""experiments/shapes_fid.py: the scores it tabulates and the train floor's images."""
import numpy as np

from experiments import shapes_fid
from jaxgen import config as config_lib
from jaxgen.tasks import runs


def test_scores_of_a_set_against_itself_and_a_shifted_copy():
    features = np.random.default_rng(0).normal(size=(200, 16))
    same = shapes_fid.scores(features, features)
    assert abs(same["fid"]) < 1e-6 and same["precision"] == 1.0 and same["recall"] == 1.0
    # Equal covariances: the Frechet distance is the squared distance between the means.
    shift = np.linspace(0.0, 1.0, 16)
    np.testing.assert_allclose(shapes_fid.scores(features + shift, features)["fid"], np.sum(shift ** 2), rtol=1e-6)


def test_train_floor_images_are_prepared_as_the_held_out_reference(monkeypatch):
    """The 'real train' row's images: the train split's first images of the task's reference
    feature, made exactly as Task.fid_reference_images makes the held-out ones."""
    task = runs.make_task(config_lib.load("cyclegan_shapes:quick"))
    ours = shapes_fid.train_images(task, 5, 16)
    monkeypatch.setattr(task, "fid_reference_dataset", lambda: task.dataset)
    np.testing.assert_array_equal(ours, task.fid_reference_images(5, 16))
    assert ours.shape == (5, 16, 16, 3) and task.fid_reference == "painted"
