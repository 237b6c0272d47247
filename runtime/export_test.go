package runtime

// SetSettleHook makes f run at the start of every instance's settling after
// its first request, until the returned function is called.
func SetSettleHook(f func()) (restore func()) {
	settleHook = f
	return func() { settleHook = nil }
}
