package server

import (
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// serveStatic answers r from the tenant's static mapping (URL prefix ->
// folder in the tenant) without entering the interpreter. It reports
// whether the path belonged to a mapping. Paths are cleaned, and the file is
// opened component by component inside the tenant's folder (tenantfs), so
// no link planted anywhere on the way is followed, even after load, and
// only regular files are served; content type, Last-Modified, ETag and
// ranges come from http.ServeContent.
func serveStatic(w http.ResponseWriter, r *http.Request, tenantDir, scriptName string, static map[string]string) bool {
	rel := strings.TrimPrefix(r.URL.Path, scriptName)
	for prefix, folder := range static {
		p := strings.TrimRight(prefix, "/")
		if rel != p && !strings.HasPrefix(rel, p+"/") {
			continue
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return true
		}
		name := path.Clean("/" + strings.TrimPrefix(rel, p))
		f, err := tenantfs.Open(tenantDir, path.Join(filepath.ToSlash(filepath.Clean(folder)), name))
		if err != nil {
			http.NotFound(w, r)
			return true
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			http.NotFound(w, r)
			return true
		}
		defer f.Close()
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.ModTime().UnixNano(), st.Size()))
		http.ServeContent(w, r, st.Name(), st.ModTime(), f)
		return true
	}
	return false
}
