"""Tickwork's Kubernetes operator: ``BackgroundWorker`` resources reconciled into Deployments.

Layers, from the top (enforced by import-linter): ``cli`` → ``running`` → ``handlers`` (kopf)
→ ``reconciling`` → ``kubeapi`` (Kubernetes I/O) → pure builders (``builders``,
``conditions``, ``spec``, ``crd``, ``rbac``, ``settings``, ``constants``).
"""

__all__: list[str] = []
