package hostabi

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/tetratelabs/wazero/api"
)

// FuncPBKDF2HMAC is the host function behind the guest's
// hashlib.pbkdf2_hmac (ABI.md "pbkdf2_hmac").
const FuncPBKDF2HMAC = "pbkdf2_hmac"

// Limits of pbkdf2_hmac (ABI.md "pbkdf2_hmac"); above them the host refuses
// with E2BIG and the guest runs CPython's pure-Python pbkdf2_hmac instead.
const (
	// MaxPBKDF2Work caps iterations × blocks (a block is one digest of the
	// key: dklen / digest size, rounded up) of one call. At about 1.5
	// million HMAC-SHA-512 iterations a second on one core (4 million with
	// SHA-256), a call costs the host at most about 3 s of CPU; Django's
	// default iteration counts (260,000 in 3.2, about a million in 5.x) fit.
	MaxPBKDF2Work = 4_000_000
	// MaxPBKDF2KeyLen is the largest dklen.
	MaxPBKDF2KeyLen = 64 << 10
	// MaxPBKDF2Input is the largest password, and the largest salt: the
	// host copies both before it computes.
	MaxPBKDF2Input = 64 << 10
)

// errnoTooBig is WASI's E2BIG, the result of a call over the limits.
const errnoTooBig = 1

// pbkdf2Hashes are the hash names pbkdf2_hmac takes, as CPython's hashlib
// spells them in lower case.
var pbkdf2Hashes = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// PBKDF2 is pbkdf2_hmac's computation, for Go callers and tests: the key of
// dklen bytes derived from password and salt with HMAC over the named hash
// (a name of pbkdf2_hmac), or an error naming what is out of bounds.
func PBKDF2(name string, password, salt []byte, iterations, dklen int) ([]byte, error) {
	newHash, ok := pbkdf2Hashes[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("hostabi: pbkdf2_hmac: unknown hash %q", name)
	case iterations < 1 || dklen < 1:
		return nil, fmt.Errorf("hostabi: pbkdf2_hmac: iterations %d and dklen %d must be at least 1", iterations, dklen)
	case dklen > MaxPBKDF2KeyLen || len(password) > MaxPBKDF2Input || len(salt) > MaxPBKDF2Input:
		return nil, fmt.Errorf("hostabi: pbkdf2_hmac: dklen %d, password %d or salt %d bytes over the cap of %d", dklen, len(password), len(salt), MaxPBKDF2Input)
	}
	size := newHash().Size()
	if blocks := (dklen + size - 1) / size; uint64(iterations)*uint64(blocks) > MaxPBKDF2Work {
		return nil, fmt.Errorf("hostabi: pbkdf2_hmac: %d iterations × %d blocks over the cap of %d", iterations, blocks, MaxPBKDF2Work)
	}
	return pbkdf2Key(context.Background(), newHash, password, salt, iterations, dklen)
}

// pbkdf2CheckEvery is how many HMAC iterations pbkdf2Key computes between
// two looks at its context (a few milliseconds of work at most).
const pbkdf2CheckEvery = 4096

// pbkdf2Key derives the key of RFC 8018's PBKDF2 (section 5.2): block i of
// the key is U1 ^ U2 ^ ... ^ Uc, with U1 = HMAC(password, salt || i as 4
// big-endian bytes) and Uj = HMAC(password, Uj-1). Go's crypto/pbkdf2 gives
// the same keys but cannot be stopped; this loop ends with ctx's error
// within pbkdf2CheckEvery iterations, so a call past its deadline costs the
// host no more CPU (TestPBKDF2MatchesCrypto holds it to crypto/pbkdf2).
func pbkdf2Key(ctx context.Context, newHash func() hash.Hash, password, salt []byte, iterations, dklen int) ([]byte, error) {
	prf := hmac.New(newHash, password)
	size := prf.Size()
	key := make([]byte, 0, (dklen+size-1)/size*size)
	u := make([]byte, 0, size)
	t := make([]byte, size)
	var counter [4]byte
	for block := uint32(1); len(key) < dklen; block++ {
		binary.BigEndian.PutUint32(counter[:], block)
		prf.Reset()
		prf.Write(salt)
		prf.Write(counter[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for j := 1; j < iterations; j++ {
			if j%pbkdf2CheckEvery == 0 && ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			subtle.XORBytes(t, t, u)
		}
		key = append(key, t...)
	}
	return key[:dklen], nil
}

// pbkdf2HMAC: ABI.md "pbkdf2_hmac". The inputs are copied out of guest
// memory and the key computed on the calling goroutine, which looks at ctx
// every pbkdf2CheckEvery iterations: when ctx ends first, the call traps
// (as every blocking call does) and the computation stops with it.
func pbkdf2HMAC(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	namePtr, nameLen := uint32(stack[0]), uint32(stack[1])
	pwPtr, pwLen := uint32(stack[2]), uint32(stack[3])
	saltPtr, saltLen := uint32(stack[4]), uint32(stack[5])
	iterations, out, dklen := uint32(stack[6]), uint32(stack[7]), uint32(stack[8])
	switch {
	case nameLen > 16:
		stack[0] = negErrno(errnoInval)
		return
	case pwLen > MaxPBKDF2Input || saltLen > MaxPBKDF2Input || dklen > MaxPBKDF2KeyLen:
		stack[0] = negErrno(errnoTooBig)
		return
	}
	name, ok1 := guestBytes(m, namePtr, nameLen)
	password, ok2 := guestBytes(m, pwPtr, pwLen)
	salt, ok3 := guestBytes(m, saltPtr, saltLen)
	_, ok4 := guestBytes(m, out, dklen)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		stack[0] = negErrno(errnoFault)
		return
	}
	newHash, known := pbkdf2Hashes[string(name)]
	if !known || iterations < 1 || dklen < 1 {
		stack[0] = negErrno(errnoInval)
		return
	}
	size := uint64(newHash().Size())
	if uint64(iterations)*((uint64(dklen)+size-1)/size) > MaxPBKDF2Work {
		stack[0] = negErrno(errnoTooBig)
		return
	}
	// Copies: the guest's memory is not read while the key is computed.
	password, salt = append([]byte(nil), password...), append([]byte(nil), salt...)
	key, err := pbkdf2Key(ctx, newHash, password, salt, int(iterations), int(dklen))
	if err != nil {
		panic(fmt.Errorf("hostabi: %s: %w", FuncPBKDF2HMAC, err))
	}
	dst, ok := guestBytes(m, out, dklen) // the guest was blocked: memory did not grow
	if !ok {
		stack[0] = negErrno(errnoIO)
		return
	}
	copy(dst, key)
	stack[0] = 0
}
