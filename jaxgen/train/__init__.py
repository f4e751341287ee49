"""Training, in two layers. Below the tasks, the helpers a task's step uses: state, optim, accumulate,
precision, parallel, checkpoint, log, mfu, distributed. Above the tasks, what drives them: loop (the
one training loop) and pretrained (export / load a run's sampling params). setup.cfg's import
contract keeps the two apart."""
