//go:build !cgo

package sandbox

import (
	"sync"
	"sync/atomic"
	"time"
)

// Without cgo the epoch "thread" is a goroutine. It stops the guests at their
// deadlines just as well, but it is itself stopped while Go stops the world,
// so a guest in a long loop can hold up a GC pause until its deadline
// (README: build with cgo, the default on Linux).
var epochWords struct {
	sync.Mutex
	words map[*uint32]struct{}
	once  sync.Once
}

func epochRegister(word *uint32) (func(), error) {
	epochWords.once.Do(func() {
		epochWords.words = map[*uint32]struct{}{}
		go func() {
			for range time.Tick(preemptTick) {
				epochWords.Lock()
				for w := range epochWords.words {
					atomic.StoreUint32(w, 1)
				}
				epochWords.Unlock()
			}
		}()
	})
	epochWords.Lock()
	epochWords.words[word] = struct{}{}
	epochWords.Unlock()
	return func() {
		epochWords.Lock()
		delete(epochWords.words, word)
		epochWords.Unlock()
	}, nil
}
