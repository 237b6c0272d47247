package server

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// serveStatic answers r from the tenant's static mapping (URL prefix ->
// folder in the tenant) without entering the interpreter. It reports
// whether the path belonged to a mapping. Paths are cleaned before they are
// joined, never leave the folder, and links are not followed; content type,
// Last-Modified, ETag and ranges come from http.ServeContent.
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
		root := filepath.Join(tenantDir, filepath.Clean(folder))
		full := filepath.Join(root, filepath.FromSlash(name))
		if !strings.HasPrefix(full, root+string(filepath.Separator)) {
			http.NotFound(w, r)
			return true
		}
		st, err := os.Lstat(full)
		if err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return true
		}
		f, err := os.Open(full)
		if err != nil {
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
