package server

import (
	"time"
)

// pruneEvery is how often, at most, a long-running server prunes the .pyc
// cache between loads (and touches the folders its tenants use, so that
// another process's prune leaves them).
const pruneEvery = time.Hour

// pruneCompiled removes from the .pyc cache the compiled code that no
// version in use (routed, or retiring with requests in flight) needs and
// that has been idle for Config.PycRetention (sandbox.RetainCompiled).
// Several servers and commands may share the cache: each touches what it
// uses, so none removes another's folders while that one runs.
func (s *Server) pruneCompiled() {
	if s.cfg.PycRetention <= 0 {
		return
	}
	s.mu.RLock()
	keep := make([]string, 0, len(s.tenants)+len(s.retiring))
	for _, l := range s.tenants {
		keep = append(keep, l.app.PycacheDir)
	}
	for l := range s.retiring {
		keep = append(keep, l.app.PycacheDir)
	}
	s.mu.RUnlock()
	res, err := s.engine.RetainCompiled(keep, s.cfg.PycRetention)
	if err != nil {
		s.log.Warn("pruning the .pyc cache", "err", err)
	}
	if res.Apps+res.Shared > 0 {
		s.log.Info("pruned the .pyc cache", "app_folders", res.Apps, "shared_entries", res.Shared,
			"freed_mib", float64(res.Bytes)/(1<<20), "idle_for", s.cfg.PycRetention.String())
	}
}

// prunePeriodically prunes the .pyc cache every pruneEvery until Close.
func (s *Server) prunePeriodically() {
	defer s.builders.Done()
	tick := time.NewTicker(min(pruneEvery, max(s.cfg.PycRetention/4, time.Second)))
	defer tick.Stop()
	for {
		select {
		case <-s.background.Done():
			return
		case <-tick.C:
			// Not in the middle of a load, whose new versions are not
			// routed (kept) yet.
			s.reloadMu.Lock()
			s.pruneCompiled()
			s.reloadMu.Unlock()
		}
	}
}
