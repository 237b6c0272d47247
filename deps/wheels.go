package deps

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Wheel is a wheel file in a find-links folder, by its file name
// (name-version[-build]-python-abi-platform.whl).
type Wheel struct {
	Path, Name, Version string
	Python, ABI, Plat   string
}

// Pure reports whether the wheel is for any platform and ABI (the only kind
// the sandbox can use: it loads no native code).
func (w Wheel) Pure() bool {
	return w.ABI == "none" && w.Plat == "any"
}

// parseWheel reads a wheel's file name; ok is false for other files.
func parseWheel(path string) (Wheel, bool) {
	base, ok := strings.CutSuffix(filepath.Base(path), ".whl")
	if !ok {
		return Wheel{}, false
	}
	parts := strings.Split(base, "-")
	if len(parts) != 5 && len(parts) != 6 {
		return Wheel{}, false
	}
	n := len(parts)
	return Wheel{Path: path, Name: Normalize(parts[0]), Version: parts[1],
		Python: parts[n-3], ABI: parts[n-2], Plat: parts[n-1]}, true
}

// Links lists the wheels and sdists in the find-links folders, by normalized
// project name.
func Links(dirs []string) (wheels map[string][]Wheel, sdists map[string][]string, err error) {
	wheels, sdists = map[string][]Wheel{}, map[string][]string{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if w, ok := parseWheel(p); ok {
				wheels[w.Name] = append(wheels[w.Name], w)
				continue
			}
			for _, ext := range []string{".tar.gz", ".zip", ".tar.bz2"} {
				if base, ok := strings.CutSuffix(e.Name(), ext); ok {
					if i := strings.LastIndex(base, "-"); i > 0 {
						n := Normalize(base[:i])
						sdists[n] = append(sdists[n], p)
					}
				}
			}
		}
	}
	for _, ws := range wheels {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Path < ws[j].Path })
	}
	return wheels, sdists, nil
}
