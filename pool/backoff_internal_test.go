package pool

import (
	"testing"
	"time"
)

func TestInitBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 6: 160 * time.Second,
		7: 5 * time.Minute, 8: 5 * time.Minute, 1000: 5 * time.Minute,
	} {
		if got := initBackoff(n); got != want {
			t.Errorf("initBackoff(%d) = %v, want %v", n, got, want)
		}
	}
}
