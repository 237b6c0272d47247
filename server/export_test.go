package server

import "time"

// SetDropReportInterval sets how often dropped tenant records are
// reported, until the test ends (restore).
func SetDropReportInterval(d time.Duration) (restore func()) {
	old := tenantLogDropReport
	tenantLogDropReport = d
	return func() { tenantLogDropReport = old }
}
