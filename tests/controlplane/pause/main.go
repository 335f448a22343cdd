// Command pause is the sandbox process of every pod on the test node: it
// keeps the pod's namespaces alive, reaps children it inherits as PID 1, and
// exits 0 on SIGINT or SIGTERM. Built statically (CGO_ENABLED=0) and packed
// as an OCI image by scripts/build-image.sh; no registry is involved.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("jwks-operator test pause\n")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
