"""``python -m worker_operator`` runs the operator, like ``tickwork-operator``."""

from worker_operator.cli import entrypoint

entrypoint()
