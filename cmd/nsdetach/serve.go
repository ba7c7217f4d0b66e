package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

func newServeCommand(stdout, stderr io.Writer) *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR [--root DIR] [--interval D] [--detach-stale]",
		Short: "Export leaked-mount metrics for Prometheus (and optionally clean stale leaks)",
		Long: `serve scans the data root every --interval, as 'nsdetach scan' does, and serves
the results for Prometheus on http://ADDR/metrics:

  nsdetach_leaked_mounts{state="stale"|"pinned"}  leaked mounts after the last
                                                 pass (in-use mounts excluded)
  nsdetach_mounts_in_use                          mounts of running containers
                                                 and the engine seen in other
                                                 namespaces
  nsdetach_namespaces_scanned                     mount namespaces in the last scan
  nsdetach_scan_duration_seconds                  histogram of scan durations
  nsdetach_scan_errors_total{reason=...}          scans that failed, by reason
                                                 (permission, canceled, other)
  nsdetach_detach_total{result=...}               with --detach-stale: mounts
                                                 detached, gone, failed or refused
  nsdetach_last_scan_timestamp_seconds            when the last scan succeeded

With --detach-stale each pass also detaches the stale leaks (as 'nsdetach
detach --root DIR --stale-only'); pinned and in-use mounts are never touched.

GET /healthz answers 200 when the last scan succeeded and 503 with the error
when it failed; while the last scan has failed, the gauges of scan results
(leaked mounts, mounts in use, namespaces scanned) are not exported at all,
rather than as zeros or as an older scan's figures. The first scan runs before the listener accepts requests, so a
scrape never sees empty metrics. SIGTERM or SIGINT shuts the server down
gracefully (in-flight requests finish, at most 10s).

Exit status: 0 after a graceful shutdown, 2 when the first scan cannot read
every namespace (run as root), or on bad input: a --root that does
not exist, a listen address that cannot be bound (malformed, not an address of
this host, port in use), a non-positive --interval.`,
		Example: `  nsdetach serve --listen :9733 --root /var/lib/docker
  nsdetach serve --listen 127.0.0.1:9733 --root /home/docker_rt --interval 1m --detach-stale
  curl -s localhost:9733/metrics | grep nsdetach_leaked_mounts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), stdout, stderr, cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.listen, "listen", "", "HOST:PORT to serve /metrics and /healthz on (required)")
	cmd.Flags().StringVar(&cfg.root, "root", daemon.DefaultDataRoot, "the engine's data root")
	cmd.Flags().DurationVar(&cfg.interval, "interval", 30*time.Second, "time between scans")
	cmd.Flags().BoolVar(&cfg.detachStale, "detach-stale", false, "detach stale leaks on every pass (never pinned or in-use mounts)")
	return cmd
}

// serveConfig is what serve runs with: its flags.
type serveConfig struct {
	listen      string
	root        string
	interval    time.Duration
	detachStale bool
}

// runServe is serve: a first pass, then the metrics server and a pass
// every cfg.interval until SIGTERM or SIGINT. A failed preflight serves 503
// instead (serveNotReady).
func runServe(ctx context.Context, stdout, stderr io.Writer, cfg serveConfig) error {
	if cfg.listen == "" {
		return usageError(errors.New("--listen ADDR is required: the HOST:PORT to serve metrics on, e.g. :9733"))
	}
	if cfg.interval <= 0 {
		return usageError(errors.Errorf("--interval %s: give a positive duration, e.g. 30s", cfg.interval))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := thisProcess.preflight(); err != nil {
		return serveNotReady(ctx, cfg.listen, stdout, err)
	}
	e := newExporter(cfg.root, cfg.detachStale)
	if err := e.pass(ctx); err != nil {
		return classify(err)
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return listenError(cfg.listen, err)
	}
	srv := &http.Server{Handler: e.handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "nsdetach: serving metrics on http://%s/metrics (root %s, every %s)\n", ln.Addr(), e.root, cfg.interval)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.every(ctx, cfg.interval)
	}()
	err = serveUntil(ctx, srv, ln, func() { fmt.Fprintln(stderr, "nsdetach serve: shutting down") })
	stop()
	wg.Wait()
	return err
}

// every runs a pass every interval until ctx ends; a failed pass is logged
// (and said by /healthz), the next one tries again.
func (e *exporter) every(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.pass(ctx); err != nil && ctx.Err() == nil {
				l := logrus.WithError(err)
				if errors.Is(err, fs.ErrPermission) {
					l = l.WithField("fix", needsRoot)
				}
				l.Warn("nsdetach serve: scan failed")
			}
		}
	}
}

// serveUntil serves srv on ln until ctx ends, then calls onStop and shuts
// the server down gracefully (in-flight requests finish, at most 10s). A
// server that stops by itself, or a shutdown that fails, is exit status 1.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, onStop func()) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return &exitError{code: exitFound, err: errors.Wrapf(err, "serving on %s", ln.Addr())}
	case <-ctx.Done():
	}
	onStop()
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return &exitError{code: exitFound, err: errors.Wrap(err, "shutting down")}
	}
	return nil
}

// listenError is the usage error of a --listen address that cannot be
// bound.
func listenError(listen string, err error) error {
	return usageError(errors.Errorf("--listen %s: %v: give a HOST:PORT of this host that is free, e.g. :9733", listen, unwrapOp(err)))
}

// unwrapOp drops net.OpError's "listen tcp ADDR:" prefix, which the message
// already names.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// exporter runs scan passes and holds their metrics.
type exporter struct {
	root        string
	detachStale bool
	opts        []mountns.Option // for FindLeaks
	reg         *prometheus.Registry

	leaked     *prometheus.GaugeVec
	inUse      prometheus.Gauge
	namespaces prometheus.Gauge
	duration   prometheus.Histogram
	scanErrors *prometheus.CounterVec
	detached   *prometheus.CounterVec
	lastScan   prometheus.Gauge

	passMu   sync.Mutex // one pass at a time
	healthMu sync.Mutex
	lastErr  error
}

func newExporter(root string, detachStale bool) *exporter {
	e := &exporter{
		root: root, detachStale: detachStale, reg: prometheus.NewRegistry(),
		leaked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nsdetach_leaked_mounts",
			Help: "Mounts under the data root leaked into other mount namespaces, by state (stale: no live container uses it; pinned: a live container does)."}, []string{"state"}),
		inUse: prometheus.NewGauge(prometheus.GaugeOpts{Name: "nsdetach_mounts_in_use",
			Help: "Mounts under the data root in other namespaces that belong to running containers or the engine (not leaks)."}),
		namespaces: prometheus.NewGauge(prometheus.GaugeOpts{Name: "nsdetach_namespaces_scanned",
			Help: "Mount namespaces read by the last scan."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nsdetach_scan_duration_seconds",
			Help: "Duration of scans of every mount namespace.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		scanErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nsdetach_scan_errors_total",
			Help: "Scans that failed, by reason (permission: a process or namespace could not be read, run as root; canceled; other)."}, []string{"reason"}),
		detached: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nsdetach_detach_total",
			Help: "Stale leaked mounts acted on with --detach-stale, by result (detached, gone, failed, refused)."}, []string{"result"}),
		lastScan: prometheus.NewGauge(prometheus.GaugeOpts{Name: "nsdetach_last_scan_timestamp_seconds",
			Help: "Unix time of the last successful scan."}),
	}
	for _, s := range []daemon.Verdict{daemon.Stale, daemon.Pinned} {
		e.leaked.WithLabelValues(string(s))
	}
	for _, a := range []mountns.Action{mountns.Detached, mountns.Gone, mountns.Failed, mountns.Refused} {
		e.detached.WithLabelValues(string(a))
	}
	for _, r := range []string{reasonPermission, reasonCanceled, reasonOther} {
		e.scanErrors.WithLabelValues(r)
	}
	e.reg.MustRegister(whileHealthy{e, []prometheus.Collector{e.leaked, e.inUse, e.namespaces}},
		e.duration, e.scanErrors, e.detached, e.lastScan)
	return e
}

// Reasons of nsdetach_scan_errors_total.
const (
	reasonPermission = "permission"
	reasonCanceled   = "canceled"
	reasonOther      = "other"
)

func scanErrorReason(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return reasonPermission
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return reasonCanceled
	}
	return reasonOther
}

// whileHealthy exports the gauges of scan results only while the last scan
// succeeded: after a failed scan a zero, or the figure of an older scan,
// would read as an answer.
type whileHealthy struct {
	e  *exporter
	cs []prometheus.Collector
}

func (w whileHealthy) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range w.cs {
		c.Describe(ch)
	}
}

func (w whileHealthy) Collect(ch chan<- prometheus.Metric) {
	if w.e.health() != nil {
		return
	}
	for _, c := range w.cs {
		c.Collect(ch)
	}
}

// health is the error of the last scan, nil when it succeeded.
func (e *exporter) health() error {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	return e.lastErr
}

// pass scans, detaches stale leaks if asked, and updates the metrics.
func (e *exporter) pass(ctx context.Context) error {
	e.passMu.Lock()
	defer e.passMu.Unlock()
	scan, err := daemon.FindLeaks(ctx, e.root, 0, e.opts...)
	e.healthMu.Lock()
	e.lastErr = err
	e.healthMu.Unlock()
	if err != nil {
		e.scanErrors.WithLabelValues(scanErrorReason(err)).Inc()
		return err
	}
	e.root = scan.Root
	e.duration.Observe(scan.Duration.Seconds())
	e.namespaces.Set(float64(scan.Scanned))
	n := scan.Count()
	inUse := 0
	for _, ns := range scan.Namespaces {
		for _, l := range ns.Leaks {
			if l.InUse {
				inUse++
			}
		}
	}
	if e.detachStale && n[daemon.Stale] > 0 {
		p, err := detachLeaks(ctx, scan, true, false, nil)
		if err != nil {
			logrus.WithError(err).Warn("nsdetach serve: detaching stale leaks failed")
		}
		for _, rep := range p.Reports {
			by, _ := rep.Count()
			for a, k := range by {
				e.detached.WithLabelValues(string(a)).Add(float64(k))
			}
			for _, ns := range rep.Namespaces {
				for _, m := range ns.Result {
					if !m.Remains && (m.Action == mountns.Detached || m.Action == mountns.Gone) {
						n[daemon.Stale]--
					}
				}
			}
		}
	}
	e.leaked.WithLabelValues(string(daemon.Stale)).Set(float64(n[daemon.Stale]))
	e.leaked.WithLabelValues(string(daemon.Pinned)).Set(float64(n[daemon.Pinned]))
	e.inUse.Set(float64(inUse))
	e.lastScan.SetToCurrentTime()
	return nil
}

func (e *exporter) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.health(); err != nil {
			http.Error(w, "last scan failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
