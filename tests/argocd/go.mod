// Runs Argo CD health checks (argocd/resource_customizations) under gopher-lua, the Lua
// interpreter Argo CD embeds, for the test suite. Not part of the product.
module modelsync.dev/argocd-health

go 1.23

require (
	github.com/yuin/gopher-lua v1.1.2
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
