package pool

import (
	"net/http"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// Handler serves every request with one app's pool.
type Handler struct {
	Pool *Pool
	// Info, if set, says how the client reached us and where the app is
	// mounted; without it the request is taken as it came.
	Info func(*http.Request) RequestInfo
	// Log receives the guest's log lines during each request.
	Log sandbox.GuestLog
	// Done, if set, is told how each request ended.
	Done func(*http.Request, Outcome)
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP serves r with an instance of h.Pool, then closes r's body (it
// is full duplex, see ServeInstance), draining what the app left unread.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var info RequestInfo
	if h.Info != nil {
		info = h.Info(r)
	}
	o := h.Pool.Serve(w, r, info, h.Log)
	if r.Body != nil {
		r.Body.Close()
	}
	if h.Done != nil {
		h.Done(r, o)
	}
}
