//go:build cgo

package sandbox

/*
#include <pthread.h>
#include <stdint.h>
#include <time.h>

// The epoch thread: a plain POSIX thread, outside Go's scheduler, that sets
// every registered interrupt word every tick. It keeps running while Go
// stops the world, which is exactly when a guest in a loop must be made to
// call into the host (a Go safe point). Words live in mmap'd guest memory,
// never on the Go heap.
#define EPOCH_SLOTS 65536
static uint32_t *epoch_words[EPOCH_SLOTS];
static int epoch_high; // slots [0, epoch_high) may be in use
static pthread_mutex_t epoch_mu = PTHREAD_MUTEX_INITIALIZER;
static long epoch_tick_ns;

static void *epoch_run(void *arg) {
	(void)arg;
	struct timespec ts = {0, epoch_tick_ns};
	for (;;) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&epoch_mu);
		for (int i = 0; i < epoch_high; i++) {
			if (epoch_words[i] != NULL) {
				__atomic_store_n(epoch_words[i], 1, __ATOMIC_RELAXED);
			}
		}
		pthread_mutex_unlock(&epoch_mu);
	}
	return NULL;
}

static int epoch_start(long tick_ns) {
	pthread_t t;
	epoch_tick_ns = tick_ns;
	if (pthread_create(&t, NULL, epoch_run, NULL) != 0) {
		return -1;
	}
	return pthread_detach(t);
}

// epoch_register returns a slot for word, or -1 when all are taken.
static int epoch_register(uint32_t *word) {
	int slot = -1;
	pthread_mutex_lock(&epoch_mu);
	for (int i = 0; i < EPOCH_SLOTS; i++) {
		if (epoch_words[i] == NULL) {
			epoch_words[i] = word;
			slot = i;
			if (i >= epoch_high) {
				epoch_high = i + 1;
			}
			break;
		}
	}
	pthread_mutex_unlock(&epoch_mu);
	return slot;
}

// epoch_unregister frees the slot; once it returns the thread will not
// touch the word again, so its memory may be unmapped.
static void epoch_unregister(int slot) {
	pthread_mutex_lock(&epoch_mu);
	epoch_words[slot] = NULL;
	while (epoch_high > 0 && epoch_words[epoch_high - 1] == NULL) {
		epoch_high--;
	}
	pthread_mutex_unlock(&epoch_mu);
}
*/
import "C"

import (
	"errors"
	"sync"
	"unsafe"
)

var epochStart struct {
	once sync.Once
	err  error
}

// epochRegister makes the epoch thread raise word every preemptTick until
// the returned func is called. word must not be on the Go heap.
func epochRegister(word *uint32) (unregister func(), err error) {
	epochStart.once.Do(func() {
		if C.epoch_start(C.long(preemptTick.Nanoseconds())) != 0 {
			epochStart.err = errors.New("sandbox: cannot start the epoch thread")
		}
	})
	if epochStart.err != nil {
		return nil, epochStart.err
	}
	slot := C.epoch_register((*C.uint32_t)(unsafe.Pointer(word)))
	if slot < 0 {
		return nil, errors.New("sandbox: too many live instances for the epoch thread")
	}
	return func() { C.epoch_unregister(slot) }, nil
}
