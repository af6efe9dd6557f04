"""Pure observe -> diff -> plan -> status per kind: no kopf, no HTTP."""
