"""The errors a user can cause, each carrying one clear sentence; the CLI prints them and exits 2."""
from jaxgen.config import ConfigError
from jaxgen.data.pipeline import DataError
from jaxgen.nn.bert import PretrainedModelError
from jaxgen.nn.text import TokenizerError
from jaxgen.tasks.base import TaskError
from jaxgen.train.checkpoint import CheckpointError, WorkdirError
from jaxgen.train.distributed import DistributedError
from jaxgen.train.loop import NonFiniteLossError


class UsageError(ValueError):
    """A bad command-line value (e.g. an output file type jaxgen cannot write)."""


EXPECTED = (ConfigError, DataError, TaskError, CheckpointError, NonFiniteLossError, UsageError, DistributedError,
            TokenizerError, PretrainedModelError, WorkdirError)
