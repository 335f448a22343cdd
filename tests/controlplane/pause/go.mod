// The test node's pod sandbox ("pause") program: holds a pod's namespaces
// open until it is told to stop. Standard library only.
module jwks-operator/tests/controlplane/pause

go 1.25.0
