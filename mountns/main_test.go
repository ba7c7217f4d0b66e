package mountns_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

const (
	// detachEnv makes the test binary run one DetachAll ("TARGET ROOT") and
	// print its outcome, for tests that need it in a process with fewer
	// privileges.
	detachEnv = "MOUNTNS_TEST_DETACH"
	// holdersEnv makes it run one FindHolders (TARGET) and print its
	// outcome; with namespaceEnv ("INODE:PID,PID...") it lists only that
	// namespace, with those processes.
	holdersEnv   = "MOUNTNS_TEST_HOLDERS"
	namespaceEnv = "MOUNTNS_TEST_NAMESPACE"
	// detachHoldersEnv makes it run one DetachHolders ("TARGET ROOT") of
	// the holders in heldEnv (JSON, as FindHolders returned them).
	detachHoldersEnv = "MOUNTNS_TEST_DETACH_HOLDERS"
	heldEnv          = "MOUNTNS_TEST_HELD"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(confinedEnv); spec != "" {
		os.Exit(runConfined(spec))
	}
	if args := os.Getenv(detachEnv); args != "" {
		f := strings.SplitN(args, " ", 2)
		_, err := mountns.DetachAll(context.Background(), f[0], mountns.WithRoot(f[1]))
		fmt.Printf("eperm=%v err=%v\n", errors.Is(err, unix.EPERM), err)
		os.Exit(0)
	}
	if target := os.Getenv(holdersEnv); target != "" {
		var opts []mountns.Option
		if ns := os.Getenv(namespaceEnv); ns != "" {
			opts = append(opts, mountns.WithLister(parseNamespace(ns)))
		}
		holders, err := mountns.FindHolders(context.Background(), target, opts...)
		fmt.Printf("holders=%d permission=%v err=%v\n", len(holders), errors.Is(err, fs.ErrPermission), err)
		os.Exit(0)
	}
	if args := os.Getenv(detachHoldersEnv); args != "" {
		f := strings.SplitN(args, " ", 2)
		var holders []mountns.Holder
		if err := json.Unmarshal([]byte(os.Getenv(heldEnv)), &holders); err != nil {
			fmt.Println("bad holders:", err)
			os.Exit(2)
		}
		rep, err := mountns.DetachHolders(context.Background(), f[0], holders, mountns.WithRoot(f[1]))
		by, remaining := rep.Count()
		fmt.Printf("gone=%d remaining=%d permission=%v err=%v\n", by[mountns.Gone], remaining, errors.Is(err, fs.ErrPermission), err)
		os.Exit(0)
	}
	nstest.Main(m)
}

// fixedLister lists the namespaces it was given.
type fixedLister []mountns.Namespace

func (l fixedLister) List(context.Context) ([]mountns.Namespace, error) { return l, nil }

// parseNamespace reads "INODE:PID,PID..." into a one-namespace lister.
func parseNamespace(s string) fixedLister {
	ino, pids, _ := strings.Cut(s, ":")
	var ns mountns.Namespace
	ns.Inode, _ = strconv.ParseUint(ino, 10, 64)
	for _, p := range strings.Split(pids, ",") {
		pid, _ := strconv.Atoi(p)
		ns.PIDs = append(ns.PIDs, pid)
	}
	return fixedLister{ns}
}
