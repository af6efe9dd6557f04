-- Resumes reconciling: removes the paused annotation.
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["qdrant.collection-operator.dev/paused"] = nil
end
return obj
