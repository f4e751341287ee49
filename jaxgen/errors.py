"""The one base class of the errors a user can cause, at the bottom of jaxgen's layers.

Each layer defines its own errors (ConfigError in jaxgen.config, DataError in jaxgen.data.pipeline,
TaskError in jaxgen.tasks.base, CheckpointError in jaxgen.train.checkpoint, ...) as subclasses of
`UserError`, so the CLI catches them all with one `except UserError` and prints their sentence. This
module imports nothing from jaxgen: every layer may import it.
"""


class UserError(Exception):
    """An error the user caused (a bad config or command-line value, a missing dataset, a run folder
    that cannot be used), carrying one clear sentence: the CLI prints it as `jaxgen: error: ...` and
    exits with status 2. Subclasses keep a built-in base too (ValueError, RuntimeError), so
    `except ValueError` still catches them."""


class UsageError(UserError, ValueError):
    """A bad command-line value (e.g. an output file type jaxgen cannot write)."""
