package sandbox_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestSQLiteConcurrentWriters sends concurrent writes to a tenant with two
// instances and a SQLite file in its data folder: the requests run side by
// side and SQLite's locks (held by the host, ABI.md "File locks") order
// their transactions, so every row lands, each request sees the previous
// ones, and the file stays consistent.
func TestSQLiteConcurrentWriters(t *testing.T) {
	results, logs := postToDataApp(t, "sqlite_writer:app", 30)
	var seen []int
	for _, r := range results {
		f := strings.Fields(r)
		if len(f) != 3 || f[0] != "200" || f[2] != "ok" {
			t.Fatalf("response %q; log:\n%s", r, logs)
		}
		v, _ := strconv.Atoi(f[1])
		seen = append(seen, v)
	}
	inSequence(t, seen, "a write was lost or two requests saw the same state")
}
