package server

import (
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// SetDropReportInterval sets how often dropped tenant records are
// reported, until the test ends (restore).
func SetDropReportInterval(d time.Duration) (restore func()) {
	old := tenantLogDropReport
	tenantLogDropReport = d
	return func() { tenantLogDropReport = old }
}

// SetWatchLimits sets the folders watched per tenant and how often polled
// tenants are looked at, and makes the system refuse watches below any
// folder named refuse (a kernel out of inotify watches), until restore.
func SetWatchLimits(perTenant int, poll time.Duration, refuse string) (restore func()) {
	oldMax, oldPoll, oldAdd := maxTenantWatches, pollInterval, watchAdd
	maxTenantWatches, pollInterval = perTenant, poll
	if refuse != "" {
		watchAdd = func(w *fsnotify.Watcher, dir string) error {
			if strings.Contains(dir, string(filepath.Separator)+refuse) {
				return syscall.ENOSPC
			}
			return oldAdd(w, dir)
		}
	}
	return func() { maxTenantWatches, pollInterval, watchAdd = oldMax, oldPoll, oldAdd }
}

// WatchCounts returns, while Watch runs, the folders watched per tenant
// folder, the tenant folders polled instead, and those too large to poll
// (reloaded on SIGHUP only).
func (s *Server) WatchCounts() (watched map[string]int, polled, sighupOnly []string) {
	return s.watchCounts()
}

// SetPollEntries sets the entries one look at a polled tenant reads at
// most, until restore.
func SetPollEntries(n int) (restore func()) {
	old := maxPollEntries
	maxPollEntries = n
	return func() { maxPollEntries = old }
}
