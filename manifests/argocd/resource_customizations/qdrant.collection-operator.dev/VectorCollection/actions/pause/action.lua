-- Pauses the operator for this VectorCollection: nothing is reconciled until resume (status keeps the last
-- verdict, condition Paused=True).
obj.metadata.annotations = obj.metadata.annotations or {}
obj.metadata.annotations["qdrant.collection-operator.dev/paused"] = "true"
return obj
