package sandbox

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteSetFileRoundTripAndChecks(t *testing.T) {
	sum := [32]byte{1, 2, 3}
	const memSize = 100 * 4096
	w := &writeSet{pageSize: 4096, runs: []pageRun{{0, 2}, {10, 1}, {90, 10}}}
	b := w.encode(sum)
	got, err := decodeWriteSet(b, sum, memSize)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, got, cmp.AllowUnexported(writeSet{}, pageRun{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if got.pages() != 13 {
		t.Errorf("pages = %d, want 13", got.pages())
	}
	// reseal recomputes the checksum, so that only the named defect remains.
	reseal := func(b []byte) []byte {
		body := b[:len(b)-4]
		return binary.LittleEndian.AppendUint32(body[:len(body):len(body)], crc32.ChecksumIEEE(body))
	}
	withRuns := func(runs ...pageRun) []byte {
		return (&writeSet{pageSize: 4096, runs: runs}).encode(sum)
	}
	for name, tc := range map[string]struct {
		b       []byte
		sum     [32]byte
		memSize uint64
	}{
		"flipped byte":      {append(append([]byte{}, b[:20]...), append([]byte{b[20] ^ 1}, b[21:]...)...), sum, memSize},
		"other snapshot":    {b, [32]byte{9}, memSize},
		"truncated":         {b[:len(b)-8], sum, memSize},
		"empty":             {nil, sum, memSize},
		"bad magic":         {reseal(append([]byte("XXXXXXXX"), b[8:]...)), sum, memSize},
		"past the image":    {withRuns(pageRun{95, 10}), sum, memSize},
		"smaller image":     {b, sum, 50 * 4096},
		"out of order":      {withRuns(pageRun{10, 1}, pageRun{0, 2}), sum, memSize},
		"overlapping":       {withRuns(pageRun{0, 5}, pageRun{3, 1}), sum, memSize},
		"empty run":         {withRuns(pageRun{3, 0}), sum, memSize},
		"count beyond data": {reseal(append(append([]byte{}, b[:44]...), append([]byte{9, 0, 0, 0}, b[48:]...)...)), sum, memSize},
	} {
		if _, err := decodeWriteSet(tc.b, tc.sum, tc.memSize); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
