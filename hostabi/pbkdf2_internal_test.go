package hostabi

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// TestPBKDF2Vectors: RFC 6070 (SHA-1), RFC 7914 section 11 (SHA-256), and
// for the other hashes CPython's OpenSSL-backed hashlib.pbkdf2_hmac, with a
// dklen that needs a second block.
func TestPBKDF2Vectors(t *testing.T) {
	for _, v := range []struct {
		name, password, salt string
		iterations, dklen    int
		want                 string
	}{
		{"sha1", "password", "salt", 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"},
		{"sha1", "password", "salt", 4096, 20, "4b007901b765489abead49d926f721d065a429c1"},
		{"sha1", "passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 25, "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038"},
		{"sha1", "pass\x00word", "sa\x00lt", 4096, 16, "56fa6aa75548099dcc37d7f03425e0c3"},
		{"sha256", "passwd", "salt", 1, 64, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"},
		{"sha256", "Password", "NaCl", 80000, 64, "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"},
		{"md5", "password", "salt", 4096, 21, "15001f89b9c29ee6998c520d1a0629e893cc3f996a"},
		{"sha224", "password", "salt", 4096, 33, "218c453bf90635bd0a21a75d172703ff6108ef603f65bb821aedade1d6961683ba"},
		{"sha384", "password", "salt", 4096, 53, "559726be38db125bc85ed7895f6e3cf574c7a01c080c3447db1e8a76764deb3c307b94853fbe424f6488c5f4f12896261d1eb43035"},
		{"sha512", "password", "salt", 4096, 69, "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5d6883f0be4"},
	} {
		got, err := PBKDF2(v.name, []byte(v.password), []byte(v.salt), v.iterations, v.dklen)
		if err != nil || hex.EncodeToString(got) != v.want {
			t.Errorf("PBKDF2(%s, %q, %q, %d, %d) = %x, %v; want %s", v.name, v.password, v.salt, v.iterations, v.dklen, got, err, v.want)
		}
	}
}

// TestPBKDF2MatchesCrypto: the loop that can be stopped gives Go's
// crypto/pbkdf2 keys, for every hash, around block boundaries and
// iteration counts around the context check.
func TestPBKDF2MatchesCrypto(t *testing.T) {
	for name, newHash := range pbkdf2Hashes {
		size := newHash().Size()
		for _, dklen := range []int{1, size - 1, size, size + 1, 3*size + 5} {
			for _, iterations := range []int{1, 2, pbkdf2CheckEvery - 1, pbkdf2CheckEvery, pbkdf2CheckEvery + 1} {
				want, err := pbkdf2.Key(newHash, "pass\x00word", []byte("NaCl salt"), iterations, dklen)
				if err != nil {
					t.Fatal(err)
				}
				got, err := PBKDF2(name, []byte("pass\x00word"), []byte("NaCl salt"), iterations, dklen)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("PBKDF2(%s, %d iterations, dklen %d) = %x, %v; crypto/pbkdf2 gives %x", name, iterations, dklen, got, err, want)
				}
			}
		}
	}
}

// TestPBKDF2KeyStops: a key derivation whose context ends stops within
// pbkdf2CheckEvery iterations instead of running on to its end.
func TestPBKDF2KeyStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	key, err := pbkdf2Key(ctx, pbkdf2Hashes["sha512"], []byte("pw"), []byte("salt"), MaxPBKDF2Work, 64)
	if !errors.Is(err, context.Canceled) || key != nil {
		t.Errorf("pbkdf2Key with a cancelled context = %x, %v; want context.Canceled", key, err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("took %v to stop (the whole computation is about 3 s)", el)
	}
}

// callPBKDF2 places name, password and salt at 0, 64 and 128 of a 4 KiB
// memory filled with 0xAA, calls pbkdf2_hmac with out and dklen, and returns
// its result and the memory.
func callPBKDF2(ctx context.Context, name, password, salt string, iterations, out, dklen uint32) (int32, []byte) {
	mem := &fakeMemory{b: bytes.Repeat([]byte{0xAA}, 4096)}
	copy(mem.b, name)
	copy(mem.b[64:], password)
	copy(mem.b[128:], salt)
	stack := []uint64{0, uint64(len(name)), 64, uint64(len(password)), 128, uint64(len(salt)), uint64(iterations), uint64(out), uint64(dklen)}
	pbkdf2HMAC(ctx, fakeModule{mem: mem}, stack)
	return int32(stack[0]), mem.b
}

// TestPBKDF2HMACFailures: every refusal of ABI.md "pbkdf2_hmac" is its
// -errno, with nothing written to the guest.
func TestPBKDF2HMACFailures(t *testing.T) {
	ctx := context.Background()
	rc, mem := callPBKDF2(ctx, "sha1", "password", "salt", 2, 1000, 20)
	if want := "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"; rc != 0 || hex.EncodeToString(mem[1000:1020]) != want || mem[1020] != 0xAA || mem[999] != 0xAA {
		t.Fatalf("RFC 6070 vector: result %d, out %x; want 0, %s and nothing around it", rc, mem[999:1021], want)
	}
	for _, c := range []struct {
		what              string
		name              string
		iterations, dklen uint32
		out               uint32
		lens              [3]uint32 // if set, overrides the lengths of name, password, salt
		want              int32
	}{
		{"unknown hash", "sha3_256", 1, 32, 1000, [3]uint32{}, -errnoInval},
		{"upper-case name (the guest lowers it)", "SHA256", 1, 32, 1000, [3]uint32{}, -errnoInval},
		{"hash name too long", "sha256", 1, 32, 1000, [3]uint32{17, 8, 4}, -errnoInval},
		{"zero iterations", "sha256", 0, 32, 1000, [3]uint32{}, -errnoInval},
		{"zero dklen", "sha256", 1, 0, 1000, [3]uint32{}, -errnoInval},
		{"iterations over the cap", "sha1", MaxPBKDF2Work + 1, 20, 1000, [3]uint32{}, -errnoTooBig},
		{"iterations × blocks over the cap", "sha512", MaxPBKDF2Work / 2, 129, 1000, [3]uint32{}, -errnoTooBig},
		{"iterations near 2^32", "sha256", 0xffffffff, 32, 1000, [3]uint32{}, -errnoTooBig},
		{"dklen over the cap", "sha256", 1, MaxPBKDF2KeyLen + 1, 1000, [3]uint32{}, -errnoTooBig},
		{"password over the cap", "sha256", 1, 32, 1000, [3]uint32{6, MaxPBKDF2Input + 1, 4}, -errnoTooBig},
		{"salt over the cap", "sha256", 1, 32, 1000, [3]uint32{6, 8, MaxPBKDF2Input + 1}, -errnoTooBig},
		{"out past memory", "sha256", 1, 32, 4090, [3]uint32{}, -errnoFault},
		{"out wraps around", "sha256", 1, 32, 0xfffffff0, [3]uint32{}, -errnoFault},
		{"password past memory", "sha256", 1, 32, 1000, [3]uint32{6, 4033, 4}, -errnoFault},
		{"salt past memory", "sha256", 1, 32, 1000, [3]uint32{6, 8, 3969}, -errnoFault},
	} {
		t.Run(c.what, func(t *testing.T) {
			mem := &fakeMemory{b: bytes.Repeat([]byte{0xAA}, 4096)}
			copy(mem.b, c.name)
			before := bytes.Clone(mem.b)
			lens := c.lens
			if lens == ([3]uint32{}) {
				lens = [3]uint32{uint32(len(c.name)), 8, 4}
			}
			stack := []uint64{0, uint64(lens[0]), 64, uint64(lens[1]), 128, uint64(lens[2]), uint64(c.iterations), uint64(c.out), uint64(c.dklen)}
			pbkdf2HMAC(ctx, fakeModule{mem: mem}, stack)
			if got := int32(stack[0]); got != c.want {
				t.Errorf("result %d, want %d", got, c.want)
			}
			if !bytes.Equal(mem.b, before) {
				t.Error("memory written")
			}
		})
	}
}

// TestPBKDF2HMACDeadline: the call ends when its context does, as a trap,
// without waiting for the computation (about 3 s at the cap).
func TestPBKDF2HMACDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	defer func() {
		err, _ := recover().(error)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recovered %v, want a trap with context.DeadlineExceeded", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("returned after %v", el)
		}
	}()
	callPBKDF2(ctx, "sha512", "pw", "salt", MaxPBKDF2Work, 1000, 64)
	t.Fatal("returned instead of trapping")
}

// FuzzPBKDF2HMAC: whatever numbers a guest passes, pbkdf2_hmac returns 0
// with the key PBKDF2 computes, or a -errno of ABI.md "pbkdf2_hmac" with
// nothing written, never panics, and writes nothing outside [out,
// out+dklen). Iteration counts below 2^31 are cut to under 100 to keep each
// run short; larger ones stay, to reach the cap.
func FuzzPBKDF2HMAC(f *testing.F) {
	f.Add(uint8(3), uint32(64), uint32(8), uint32(128), uint32(4), uint32(2), uint32(1000), uint32(20), []byte("sha1"))
	f.Add(uint8(6), uint32(64), uint32(0), uint32(128), uint32(0), uint32(1), uint32(4000), uint32(96), []byte("sha256"))
	f.Add(uint8(6), uint32(0xfffffff0), uint32(0x20), uint32(128), uint32(4), uint32(1), uint32(1000), uint32(32), []byte("sha512"))
	f.Add(uint8(3), uint32(64), uint32(8), uint32(128), uint32(4), uint32(0xffffffff), uint32(1000), uint32(16), []byte("md5"))
	f.Fuzz(func(t *testing.T, nameLen uint8, pw, pwLen, salt, saltLen, iterations, out, dklen uint32, data []byte) {
		if iterations < 1<<31 {
			iterations %= 100
		}
		mem := &fakeMemory{b: make([]byte, 4096)}
		copy(mem.b, data)
		before := bytes.Clone(mem.b)
		stack := []uint64{0, uint64(nameLen), uint64(pw), uint64(pwLen), uint64(salt), uint64(saltLen), uint64(iterations), uint64(out), uint64(dklen)}
		pbkdf2HMAC(context.Background(), fakeModule{mem: mem}, stack)
		rc := int32(stack[0])
		switch rc {
		case 0:
			key, err := PBKDF2(string(before[:nameLen]), before[pw:pw+pwLen], before[salt:salt+saltLen], int(iterations), int(dklen))
			if err != nil || !bytes.Equal(mem.b[out:out+dklen], key) {
				t.Fatalf("wrote %x, PBKDF2 gives %x, %v", mem.b[out:out+dklen], key, err)
			}
			if !bytes.Equal(mem.b[:out], before[:out]) || !bytes.Equal(mem.b[out+dklen:], before[out+dklen:]) {
				t.Fatal("wrote outside [out, out+dklen)")
			}
		case -errnoTooBig, -errnoFault, -errnoInval:
			if !bytes.Equal(mem.b, before) {
				t.Fatalf("result %d, but memory was written", rc)
			}
		default:
			t.Fatalf("result %d is none of ABI.md \"pbkdf2_hmac\"", rc)
		}
	})
}
