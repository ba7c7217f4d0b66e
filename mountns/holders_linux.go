package mountns

import (
	"context"
	"os"
	"sort"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/paths"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/pkg/errors"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// FindHolders returns every mount namespace other than the caller's that has
// mountpoint, or a mount below it, mounted, ordered by namespace inode. A path
// mounted nowhere gives an empty result and no error. It reads each
// namespace's mount table once and changes nothing.
func FindHolders(ctx context.Context, mountpoint string, opts ...Option) ([]Holder, error) {
	cfg := newConfig(opts)
	if err := checkPath("mount point", mountpoint); err != nil {
		return nil, err
	}
	return findHolders(ctx, cfg, mountpoint)
}

func findHolders(ctx context.Context, cfg *config, target string) ([]Holder, error) {
	callerNS, err := procfs.MountNamespace(cfg.callerPID)
	if err != nil {
		return nil, errors.Wrapf(err, "mount namespace of caller pid %d", cfg.callerPID)
	}
	// The caller's table is read whole: placing a holder's root may need any
	// of its mounts.
	callerTable, err := readPIDTable(Namespace{Inode: callerNS}, cfg.callerPID, nil)
	if err != nil {
		return nil, errors.Wrapf(err, "mount table of caller pid %d", cfg.callerPID)
	}
	tables, err := procTables(ctx, cfg, callerNS, target)
	if err != nil {
		return nil, err
	}

	callerRoot := -1
	defer func() {
		if callerRoot >= 0 {
			unix.Close(callerRoot)
		}
	}()
	for _, t := range tables {
		if t == nil || t.linkRoot == "" {
			continue
		}
		if callerRoot < 0 {
			p := "/proc/" + strconv.Itoa(cfg.callerPID) + "/root"
			if callerRoot, err = unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return nil, errors.Wrapf(&os.PathError{Op: "open", Path: p, Err: err}, "root of caller pid %d", cfg.callerPID)
			}
		}
		t.checkLinkRoot(cfg.resolver(), callerRoot)
	}

	m := newMatcher(target, cfg.upperDirOf)
	m.learn(callerTable.mounts, rootView("/"))
	views := make([][]view, len(tables))
	placed := make([]string, len(tables))
	for i, t := range tables {
		if t == nil {
			continue
		}
		if prefix, ok := placeRoot(t.mounts, callerTable.mounts, t.linkRoot); ok {
			placed[i], views[i] = prefix, rootView(prefix)
			if paths.Within(prefix, target) {
				if err := t.unfiltered(); err != nil {
					return nil, errors.Wrapf(err, "parsing mount table of namespace mnt:[%d]", t.ns.Inode)
				}
			}
		} else {
			// Only the target's own filesystem can place its mounts now,
			// and finding it there needs every line of the table.
			if err := t.unfiltered(); err != nil {
				return nil, errors.Wrapf(err, "parsing mount table of namespace mnt:[%d]", t.ns.Inode)
			}
			views[i] = targetViews(t.mounts, callerTable.mounts, target)
		}
		m.learn(t.mounts, views[i])
	}
	var holders []Holder
	for i, t := range tables {
		if t == nil {
			continue
		}
		mounts := m.match(t.mounts, views[i])
		if len(mounts) == 0 {
			continue
		}
		if t.viewPID == 0 {
			for j := range mounts {
				mounts[j].HolderRoot = false // no process runs on it (see Mount.HolderRoot)
			}
		}
		if t.uniq != nil && cfg.resolver().useUniqueIDs() {
			// Read with statmount: the unique ids came with the table.
			for j := range mounts {
				if !mounts[j].HolderRoot { // as recordUniqueIDs
					mounts[j].UniqueID = t.uniq[mounts[j].ID]
				}
			}
		}
		h := Holder{Namespace: t.ns, ViewPID: t.viewPID, Mounts: mounts}
		if placed[i] != "" {
			h.Root = placed[i]
		} else {
			h.RootUnknown = t.rootNote
			if h.RootUnknown == "" {
				h.RootUnknown = "no mount of the caller's view has the filesystem of the holder's root"
			}
		}
		holders = append(holders, h)
	}
	parallel(cfg.maxWorkers, len(holders), func(i int) {
		holders[i].Commands = commands(holders[i].PIDs)
		cfg.resolver().recordUniqueIDs(&holders[i])
	})
	cfg.logger.WithField("target", target).Debugf("mountns: %d namespaces scanned, %d hold the target", len(tables), len(holders))
	return holders, nil
}

// procTables lists the namespaces with cfg.lister and reads each one's
// table through its processes' /proc/PID/mountinfo (or by entering it).
func procTables(ctx context.Context, cfg *config, callerNS uint64, target string) ([]*table, error) {
	all, err := cfg.lister.List(ctx)
	if err != nil {
		return nil, err
	}
	nss := all[:0:0]
	for _, ns := range all {
		if ns.Inode != callerNS {
			nss = append(nss, ns)
		}
	}
	return readTables(ctx, cfg, nss, filterFor(target))
}

// readTables reads every namespace's table with a bounded number of
// workers; a namespace that vanished meanwhile is left nil. It stops at ctx's
// end.
func readTables(ctx context.Context, cfg *config, nss []Namespace, keep lineFilter) ([]*table, error) {
	tables := make([]*table, len(nss))
	var g errgroup.Group
	g.SetLimit(cfg.maxWorkers)
	for i := range nss {
		if ctx.Err() != nil {
			break
		}
		i := i
		g.Go(func() error {
			t, err := readTable(nss[i], keep, cfg.listmount)
			if isGone(err) {
				return nil
			}
			tables[i] = t
			return errors.Wrapf(err, "reading mount table of namespace mnt:[%d]", nss[i].Inode)
		})
	}
	err := g.Wait()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	if err != nil {
		return nil, err
	}
	return tables, nil
}

// maxCommandPIDs bounds how many of a namespace's processes are asked for
// their command name: enough to name a shim or a daemon, without reading
// thousands of files for a busy namespace.
const maxCommandPIDs = 2

// commands returns the distinct command names of (up to maxCommandPIDs of)
// pids, sorted.
func commands(pids []int) []string {
	seen := map[string]bool{}
	var out []string
	if len(pids) > maxCommandPIDs {
		pids = pids[:maxCommandPIDs]
	}
	for _, pid := range pids {
		c, err := procfs.Comm(pid)
		if err != nil {
			continue
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// mountIDs returns the set of mount ids in a table.
func mountIDs(t []*mountinfo.Info) map[int]bool {
	ids := make(map[int]bool, len(t))
	for _, m := range t {
		ids[m.ID] = true
	}
	return ids
}

// parallel calls fn(0..n-1) on up to workers goroutines.
func parallel(workers, n int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(workers)
	for i := 0; i < n; i++ {
		i := i
		g.Go(func() error { fn(i); return nil })
	}
	_ = g.Wait() // fn returns nothing to wait for
}
