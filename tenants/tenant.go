// Package tenants reads a tenant's folder: its tenant.toml (strict: unknown
// keys are errors), validated into an immutable Tenant. Every error names
// the file, the key and the reason. Plain data; no wazero.
package tenants

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
	"github.com/wsgi-wasm/wsgi-wasm/internal/tomlfile"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

// FileName is the tenant's configuration file inside its folder.
const FileName = "tenant.toml"

// MaxFileSize bounds tenant.toml: a larger one is refused unread.
const MaxFileSize = 1 << 20

// Tenant is one app folder, validated.
type Tenant struct {
	Name       string // the folder's name
	Dir        string // absolute
	App        string // module:callable
	Hosts      []string
	PathPrefix string // "" or "/prefix" without a trailing slash
	Env        map[string]string
	Policy     policies.Policy
	Pool       Pool
	Static     map[string]string // URL prefix -> folder inside Dir
	// PythonPath are folders inside Dir, slash-separated and relative, put
	// first on sys.path in this order (tenant.toml's python_path, run's
	// --pythonpath).
	PythonPath []string
	// Warmup is the path (and query) of a GET the server sends to a
	// restored instance once the tenant's snapshot is built, so that the
	// tenant's first real request after a build finds its write set
	// recorded; "" sends none.
	Warmup string
}

// Pool sizes the tenant's instances.
type Pool struct {
	MinWarm, MaxRequests, MaxRequestsJitter int
}

// file mirrors tenant.toml.
type file struct {
	App        string            `toml:"app"`
	Hosts      []string          `toml:"hosts"`
	PathPrefix string            `toml:"path_prefix"`
	Env        map[string]string `toml:"env"`
	Policy     policyFile        `toml:"policy"`
	Pool       struct {
		MinWarm           int `toml:"min_warm"`
		MaxRequests       int `toml:"max_requests"`
		MaxRequestsJitter int `toml:"max_requests_jitter"`
	} `toml:"pool"`
	Static     map[string]string `toml:"static"`
	Warmup     string            `toml:"warmup"`
	PythonPath []string          `toml:"python_path"`
}

type policyFile struct {
	Preset string `toml:"preset"`
	policies.Keys
}

// Error is a problem with one tenant's configuration: the file, the line
// when known, the key and the reason.
type Error = tomlfile.Error

var (
	appPattern  = regexp.MustCompile(`^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?$`)
	hostPattern = regexp.MustCompile(`^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$`)
	envKey      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Load reads and validates dir/tenant.toml against the server's ceiling.
func Load(dir string, ceiling policies.Policy) (*Tenant, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(abs, FileName)
	data, err := tenantfs.ReadFile(abs, FileName, MaxFileSize)
	if err != nil {
		return nil, &Error{File: path, Reason: err.Error()}
	}
	var f file
	if err := tomlfile.DecodeData(path, data, &f); err != nil {
		return nil, err
	}
	bad := func(key, format string, args ...any) (*Tenant, error) {
		return nil, &Error{File: path, Line: tomlfile.LineIn(data, key), Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	if f.App == "" {
		return bad("app", "missing; want \"module:callable\"")
	}
	if !appPattern.MatchString(f.App) {
		return bad("app", "%q is not \"module:callable\"", f.App)
	}
	if len(f.Hosts) == 0 {
		return bad("hosts", "missing; list the host names this tenant serves (\"*\" for a default tenant)")
	}
	for _, h := range f.Hosts {
		if !ValidHost(h) {
			return bad("hosts", "%q is not a host name, \"*.domain\" or \"*\"", h)
		}
	}
	prefix := strings.TrimRight(f.PathPrefix, "/")
	if f.PathPrefix != "" && (!strings.HasPrefix(f.PathPrefix, "/") || strings.Contains(f.PathPrefix, "..")) {
		return bad("path_prefix", "%q must start with / and not contain ..", f.PathPrefix)
	}
	if f.Warmup != "" {
		u, err := url.ParseRequestURI(f.Warmup)
		switch {
		case err != nil || !strings.HasPrefix(f.Warmup, "/") || strings.HasPrefix(f.Warmup, "//") || u.Host != "" || strings.ContainsAny(f.Warmup, " \t#"):
			return bad("warmup", "%q is not a path such as \"/healthz\"", f.Warmup)
		case strings.Contains(u.Path, ".."):
			return bad("warmup", "%q must not contain ..", f.Warmup)
		case !PathUnder(u.Path, prefix):
			return bad("warmup", "%q is not under the tenant's path_prefix %q", f.Warmup, prefix)
		}
	}
	for k := range f.Env {
		if !ValidEnvName(k) {
			return bad("env."+k, "not a valid environment variable name")
		}
	}
	if f.Pool.MinWarm < 0 || f.Pool.MaxRequests < 0 || f.Pool.MaxRequestsJitter < 0 {
		return bad("pool", "sizes cannot be negative")
	}
	for prefix, folder := range f.Static {
		if !strings.HasPrefix(prefix, "/") {
			return bad("static."+prefix, "URL prefix must start with /")
		}
		clean := filepath.Clean(folder)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return bad("static."+prefix, "folder %q must be inside the tenant folder", folder)
		}
		if st, err := os.Lstat(filepath.Join(abs, clean)); err != nil || !st.IsDir() {
			return bad("static."+prefix, "folder %q does not exist in the tenant folder", folder)
		}
	}
	var pythonPath []string
	for i, folder := range f.PythonPath {
		clean, err := FolderInside(abs, folder)
		if err != nil {
			return bad(fmt.Sprintf("python_path[%d]", i), "%v", err)
		}
		pythonPath = append(pythonPath, clean)
	}
	pol, err := policies.Resolve(f.Policy.Preset, f.Policy.Overrides(), ceiling)
	if err != nil {
		var fe *policies.FieldError
		if errors.As(err, &fe) {
			return bad("policy."+fe.Key, "%s", fe.Reason)
		}
		return nil, err
	}
	if f.Pool.MinWarm > pol.MaxInstances {
		return bad("pool.min_warm", "%d is more than the policy's max_instances %d", f.Pool.MinWarm, pol.MaxInstances)
	}
	return &Tenant{
		Name: filepath.Base(abs), Dir: abs, App: f.App, Hosts: f.Hosts, PathPrefix: prefix,
		Env: f.Env, Policy: pol, Static: f.Static, Warmup: f.Warmup, PythonPath: pythonPath,
		Pool: Pool{MinWarm: f.Pool.MinWarm, MaxRequests: f.Pool.MaxRequests, MaxRequestsJitter: f.Pool.MaxRequestsJitter},
	}, nil
}

// FolderInside checks that folder, relative, names a folder inside dir
// (absolute), with no link on the way (a link at any level could lead out
// of dir), and returns it cleaned and slash-separated.
func FolderInside(dir, folder string) (string, error) {
	clean := filepath.Clean(folder)
	if folder == "" || !filepath.IsLocal(clean) {
		return "", fmt.Errorf("%q: want a folder inside %s, as a relative path", folder, dir)
	}
	path := dir
	for _, part := range strings.Split(clean, string(filepath.Separator)) {
		if part == "." {
			continue
		}
		path = filepath.Join(path, part)
		if st, err := os.Lstat(path); err != nil || !st.IsDir() {
			return "", fmt.Errorf("%q: %s is not a folder", folder, path)
		}
	}
	return filepath.ToSlash(clean), nil
}

// ValidHost reports whether h is a host name, "*.domain" or "*" (any
// case), as tenant.toml's hosts and the server config's [hosts] take them.
func ValidHost(h string) bool { return hostPattern.MatchString(strings.ToLower(h)) }

// PathUnder reports whether a request path falls under a tenant's
// path_prefix ("" takes every path): the prefix itself or below it, never
// a path that merely starts with the same letters ("/shopping" is not under
// "/shop").
func PathUnder(path, prefix string) bool {
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}

// ValidEnvName reports whether k can name an environment variable of a
// tenant: a letter or '_', then letters, digits and '_'.
func ValidEnvName(k string) bool { return envKey.MatchString(k) }
