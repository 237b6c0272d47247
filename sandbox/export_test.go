package sandbox

// PeakRunsWithoutWriteSet is the most restores and first requests without
// a write set that ran at once on e.
func (e *Engine) PeakRunsWithoutWriteSet() int {
	_, _, peak := e.gate.counts()
	return peak
}
