"""Model families as tasks (see base.Task). `get(name)` imports the family on demand."""
import importlib

from jaxgen.tasks.base import Task, TaskError

_TASKS = {
    "vae": "jaxgen.tasks.vae:VAETask",
    "classifier": "jaxgen.tasks.classifier:ClassifierTask",
    "segmentation": "jaxgen.tasks.segmentation:SegmentationTask",
    "gan": "jaxgen.tasks.gan:GANTask",
    "cyclegan": "jaxgen.tasks.cyclegan:CycleGANTask",
    "diffusion": "jaxgen.tasks.diffusion:DiffusionTask",
    "clip": "jaxgen.tasks.clip:CLIPTask",
    "unclip": "jaxgen.tasks.unclip:UnCLIPTask",
    "text2image": "jaxgen.tasks.text2image:Text2ImageTask",
    "autoencoder": "jaxgen.tasks.autoencoder:AutoencoderTask",
}


def names() -> list[str]:
    return sorted(_TASKS)


def get(name: str) -> type[Task]:
    if name not in _TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(names())}.")
    module, _, cls = _TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
