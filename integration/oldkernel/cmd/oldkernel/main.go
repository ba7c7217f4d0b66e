package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"

	"github.com/nsdetach/nsdetach/integration/oldkernel"
	"github.com/sirupsen/logrus"
)

func main() {
	oldkernel.Init()

	abandon := flag.Bool("abandon", false, "exit when CMD exits even if descendants that inherited the filter still run (their rmdir calls then fail with ENOSYS)")
	debug := flag.Bool("debug", false, "log every EBUSY answer")
	rmdirDetaches := flag.Bool("rmdir-detaches", false, "leave rmdir to this kernel (no EBUSY answers): with -surface-3.10, only the system calls change")
	surface310 := flag.Bool("surface-3.10", false, "also fail every system call Linux 3.10 lacks with ENOSYS (statx, openat2, listmount, ...), and its missing nsfs ioctls with ENOTTY")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-abandon] [-debug] [-surface-3.10] [-rmdir-detaches] -- CMD [ARGS...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if *debug {
		log.SetLevel(logrus.DebugLevel)
	}
	var checker oldkernel.MountChecker
	if *rmdirDetaches {
		checker = func(context.Context, int, string) (bool, error) { return false, nil }
	}
	res, err := oldkernel.Run(context.Background(), oldkernel.Config{
		Args:       flag.Args(),
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Forward:    []os.Signal{syscall.SIGTERM, syscall.SIGINT},
		Abandon:    *abandon,
		Surface310: *surface310,
		Checker:    checker,
		Log:        log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		switch {
		case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
			os.Exit(127)
		case errors.Is(err, fs.ErrPermission):
			os.Exit(126)
		case res.ExitCode == 0:
			os.Exit(125)
		}
	}
	log.WithFields(logrus.Fields{
		"notifications": res.Stats.Notifications,
		"ebusy":         res.Stats.Busy,
		"continued":     res.Stats.Continued,
		"check-errors":  res.Stats.CheckErrors,
	}).Debug("oldkernel: done")
	os.Exit(res.ExitCode)
}
