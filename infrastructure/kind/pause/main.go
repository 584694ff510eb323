// Command pause is the kind node's pod sandbox program (the image registry.k8s.io/pause that
// containerd's CRI starts first in every pod). It holds the pod's namespaces: it does nothing
// but reap orphaned children until it is told to stop. ztlab builds it because no registry is
// reachable from the machines the lab is tested on.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
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
