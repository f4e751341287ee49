"""The digits-classifier feature space that every family's samples are judged in.

`ClassifierJudge(workdir)` loads a trained `classifier_digits` run and maps float images in [0, 1]
(any resolution; resized bilinearly to the classifier's) to logits and penultimate features, giving
the Frechet distance to real data, the class histogram of samples and class accuracy.
"""
import numpy as np

from jaxgen.data import transforms
from jaxgen.eval import frechet


class ClassifierJudge:
    def __init__(self, workdir: str):
        from jaxgen.train import loop

        self.config, self.task, state = loop.restore_for_eval(workdir)
        self.params = self.task.eval_params(state)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float images [N, H, W, C] in [0, 1] -> (logits [N, 10], features [N, F])."""
        return self.task.logits_and_features(self.params, np.asarray(images, np.float32))

    def real_features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, F], labels [N]) of a real split of the classifier's dataset."""
        from jaxgen import data

        d = data.load(self.config.data.name, split, self.config.data.get("data_dir"))
        _, feats = self(np.asarray(transforms.to_unit(d.arrays["image"], d.num_levels)))
        return feats, d.arrays["label"]

    def score(self, images: np.ndarray, reference_split: str = "train") -> dict[str, float]:
        """Frechet distance of `images` to the real split, next to the floor (real test vs real
        train), and the KL of the predicted-class histogram to uniform (mode coverage)."""
        logits, feats = self(images)
        train_feats, _ = self.real_features(reference_split)
        test_feats, _ = self.real_features("test")
        counts = np.bincount(logits.argmax(-1), minlength=logits.shape[-1]).astype(np.float64)
        p = counts / counts.sum()
        kl = float(np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-12) * len(p)), 0.0)))
        return {"frechet_distance": float(frechet.frechet_distance(feats, train_feats)),
                "frechet_floor_test_vs_train": float(frechet.frechet_distance(test_feats, train_feats)),
                "classes_covered": int((counts > 0).sum()), "class_kl_to_uniform": kl}
