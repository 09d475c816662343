// The local node's sandbox ("pause") program, built static so its image needs nothing else.
//
// With no arguments it holds the pod's namespaces: it sleeps until SIGTERM or SIGINT and
// reaps children, since it is PID 1 of pods that share their process namespace.
//
// The node's own tests need a tiny workload image too; rather than a second program, the same
// binary answers two commands:
//
//	pause echo WORDS...     prints WORDS and exits
//	pause dial HOST:PORT    opens a TCP connection, prints "connected to HOST:PORT", exits 0
//	                        (1 with the error when the connection fails)
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(command(os.Args[1], os.Args[2:]))
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func command(name string, args []string) int {
	switch name {
	case "echo":
		fmt.Println(strings.Join(args, " "))
		return 0
	case "dial":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: pause dial HOST:PORT")
			return 2
		}
		conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dial %s: %v\n", args[0], err)
			return 1
		}
		_ = conn.Close()
		fmt.Printf("connected to %s\n", args[0])
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q: use no arguments, echo WORDS or dial HOST:PORT\n", name)
		return 2
	}
}
