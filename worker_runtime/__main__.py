"""``python -m worker_runtime`` is the ``tickwork`` command: ``python -m worker_runtime run …``."""

from worker_runtime.cli import entrypoint

entrypoint()
