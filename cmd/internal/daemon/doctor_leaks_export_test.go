package daemon

import (
	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/mountns"
)

// NamespaceTable is namespaceTable, for the exiting-process test.
var NamespaceTable = namespaceTable

// ClassifyAs classifies holders (as FindHolders would return them for root)
// from the point of view of a caller with the given mount table.
func ClassifyAs(root string, holders []mountns.Holder, caller []*mountinfo.Info) (LeakScan, error) {
	scan := LeakScan{Root: root}
	procs := make([][]Process, len(holders))
	live, err := liveSuperblocks(holders, procs, caller)
	if err != nil {
		return scan, err
	}
	classify(&scan, holders, procs, caller, live)
	return scan, nil
}
