package oldkernel

import (
	"time"
)

func nsDuration(ns int64) time.Duration { return time.Duration(ns) }
