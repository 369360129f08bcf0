"""Tickwork's Kubernetes operator: ``BackgroundWorker`` resources reconciled into Deployments.

Layers, from the top (import-linter contracts keep them): ``cli`` → ``running`` →
``handlers`` (the only kopf module) → ``reconciling`` / ``leadership`` / ``serving`` →
``kubeapi`` (Kubernetes I/O) → pure modules (``conditions``, ``builders``, ``spec``,
``rbac``, ``crd``, ``settings``, ``metrics``, ``constants``), which import neither kopf nor
a Kubernetes client. ``manifests`` writes the generated CRD files.
"""

__all__: list[str] = []
