"""The digits-classifier feature space that every family's samples are judged in.

`ClassifierJudge(config, task, params)` takes a trained `classifier_digits` model
(jaxgen.tasks.runs.classifier_judge loads one from a run folder or a pretrained model) and maps
float images in [0, 1] (any resolution; resized bilinearly to the classifier's) to logits and
penultimate features, and scores samples there the same way for every family (`score`): Frechet
distances, precision / recall, class coverage and class accuracy.
"""
import numpy as np

from jaxgen import data
from jaxgen.data import transforms
from jaxgen.eval import frechet, precision_recall


class ClassifierJudge:
    def __init__(self, config, task, params):
        """A trained classifier: its config, task and sampling params (jaxgen.tasks.runs.classifier_judge
        loads them from a run folder or a pretrained model)."""
        self.config, self.task, self.params = config, task, params
        self._real = {}  # split -> (features, labels): `score` needs train and test on every call

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float images [N, H, W, C] in [0, 1] -> (logits [N, 10], features [N, F])."""
        return self.task.logits_and_features(self.params, np.asarray(images, np.float32))

    def real_features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, F], labels [N]) of a real split of the classifier's dataset, computed once."""
        if split not in self._real:
            d = data.load(self.config.data.name, split, self.config.data.get("data_dir"))
            _, feats = self(np.asarray(transforms.to_unit(d.arrays["image"], d.num_levels)))
            self._real[split] = (feats, d.arrays["label"])
        return self._real[split]

    def score(self, images: np.ndarray, labels: np.ndarray | None = None, pr_k: int = 3) -> dict[str, float]:
        """Every family's sample metrics in this feature space, so that their numbers compare.

        - frechet_distance: all of `images` to the real train split (its bias falls with the number
          of samples); frechet_distance_{n}: the mean over chunks of n = the test split's size,
          comparable with the floor (real test vs real train) and across runs of any sample count;
          fd_over_floor: their ratio; frechet_distance_to_test: to the held-out test digits (a model
          that copies its training set is no closer to them).
        - precision / recall (k-NN radii, k = pr_k) against train, beside real test vs train.
        - classes_covered and the KL of the predicted-class histogram to uniform (mode coverage);
          with `labels` (the requested classes), class_accuracy.
        """
        logits, feats = self(images)
        train_feats, _ = self.real_features("train")
        test_feats, _ = self.real_features("test")
        floor = frechet.frechet_distance(test_feats, train_feats)
        n_test = len(test_feats)
        chunks = [feats[i:i + n_test] for i in range(0, len(feats) - n_test + 1, n_test)]
        matched = float(np.mean([frechet.frechet_distance(c, train_feats) for c in chunks])) if chunks else float("nan")
        pr = precision_recall.precision_recall(train_feats, feats[:len(train_feats)], k=pr_k)
        pr_floor = precision_recall.precision_recall(train_feats, test_feats, k=pr_k)
        counts = np.bincount(logits.argmax(-1), minlength=logits.shape[-1]).astype(np.float64)
        p = counts / counts.sum()
        kl = float(np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-12) * len(p)), 0.0)))
        out = {"frechet_distance": float(frechet.frechet_distance(feats, train_feats)),
               f"frechet_distance_{n_test}": matched,
               "frechet_floor_test_vs_train": float(floor),
               "fd_over_floor": matched / floor,
               "frechet_distance_to_test": float(frechet.frechet_distance(feats, test_feats)),
               "precision": pr["precision"], "recall": pr["recall"],
               "precision_test_vs_train": pr_floor["precision"], "recall_test_vs_train": pr_floor["recall"],
               "classes_covered": int((counts > 0).sum()), "class_kl_to_uniform": kl}
        if labels is not None:
            out["class_accuracy"] = float(np.mean(logits.argmax(-1) == np.asarray(labels)))
        return out
