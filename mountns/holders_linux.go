package mountns

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"github.com/pkg/errors"
)

// Holder is a mount namespace, other than the caller's, that holds the target
// or mounts below it.
type Holder struct {
	Namespace
	// ViewPID is the process through whose root the table was read and the
	// mounts are detached; 0 when no process holds the namespace.
	ViewPID int `json:"view_pid"`
	// Commands are the distinct command names (/proc/PID/comm) of PIDs.
	Commands []string `json:"commands"`
	// Mounts are the matching mounts, in mount-table order.
	Mounts []Mount `json:"mounts"`
}

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
	callerNS, err := namespaceOf(cfg.callerPID)
	if err != nil {
		return nil, errors.Wrapf(err, "mount namespace of caller pid %d", cfg.callerPID)
	}
	callerTable, err := readPIDTable(Namespace{Inode: callerNS}, cfg.callerPID)
	if err != nil {
		return nil, errors.Wrapf(err, "mount table of caller pid %d", cfg.callerPID)
	}
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
	tables, err := readTables(ctx, cfg, nss)
	if err != nil {
		return nil, err
	}

	m := newMatcher(target)
	m.learn(callerTable.mounts, "/", true)
	places := make([]struct {
		prefix string
		ok     bool
	}, len(tables))
	for i, t := range tables {
		if t == nil {
			continue
		}
		places[i].prefix, places[i].ok = placeRoot(t.mounts, callerTable.mounts, t.linkRoot)
		m.learn(t.mounts, places[i].prefix, places[i].ok)
	}
	var holders []Holder
	for i, t := range tables {
		if t == nil {
			continue
		}
		mounts := m.match(t.mounts, places[i].prefix, places[i].ok)
		if len(mounts) == 0 {
			continue
		}
		holders = append(holders, Holder{
			Namespace: t.ns, ViewPID: t.viewPID,
			Commands: commands(t.ns.PIDs), Mounts: mounts,
		})
	}
	cfg.logger.WithField("target", target).Debugf("mountns: %d namespaces scanned, %d hold the target", len(nss), len(holders))
	return holders, nil
}

// readTables reads every namespace's table with a bounded number of
// workers; a namespace that vanished meanwhile is left nil. It stops at ctx's
// end.
func readTables(ctx context.Context, cfg *config, nss []Namespace) ([]*table, error) {
	tables := make([]*table, len(nss))
	errs := make([]error, len(nss))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.maxWorkers && w < len(nss); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t, err := readTable(nss[i])
				if err == errGone {
					continue
				}
				tables[i], errs[i] = t, err
			}
		}()
	}
	var ctxErr error
	for i := range nss {
		if ctxErr = ctx.Err(); ctxErr != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if ctxErr != nil {
		return nil, ctxErr
	}
	for i, err := range errs {
		if err != nil {
			return nil, errors.Wrapf(err, "reading mount table of namespace mnt:[%d]", nss[i].Inode)
		}
	}
	return tables, nil
}

// commands returns the distinct command names of pids, sorted.
func commands(pids []int) []string {
	seen := map[string]bool{}
	var out []string
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(b))
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
