"""`kubectl qdrant`: the operator's resources from kubectl (status, approve, pause, resume, snapshot, restore,
logs), installed with the package as the console script `kubectl-qdrant` (docs/kubectl-plugin.md)."""
