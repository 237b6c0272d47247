package hostabi

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// EncodeEnviron appends the request_environ encoding of the pairs
// (key, value, key, value, ...) to dst: "key NUL value NUL" each
// (ABI.md "request_environ"). A NUL inside a key or value is an error, since
// the guest could not tell it from a separator.
func EncodeEnviron(dst []byte, pairs ...string) ([]byte, error) {
	if len(pairs)%2 != 0 {
		return dst, errors.New("hostabi: EncodeEnviron needs key/value pairs")
	}
	for _, s := range pairs {
		if strings.IndexByte(s, 0) >= 0 {
			return dst, fmt.Errorf("hostabi: environ entry %q contains NUL", s)
		}
		dst = append(dst, s...)
		dst = append(dst, 0)
	}
	return dst, nil
}

// hopByHop are the headers a WSGI app may not set (PEP 3333, RFC 9110 7.6.1).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailers": true,
	"transfer-encoding": true, "upgrade": true,
}

// DecodeStart parses the response_start encoding
// "status NUL (name NUL value NUL)*" and checks it as ABI.md
// "response_start" says.
func DecodeStart(data []byte) (status int, headers []Header, err error) {
	if len(data) == 0 || data[len(data)-1] != 0 {
		return 0, nil, errors.New("hostabi: response_start: encoding must end in NUL")
	}
	fields := bytes.Split(data[:len(data)-1], []byte{0})
	if len(fields)%2 != 1 {
		return 0, nil, errors.New("hostabi: response_start: header name without value")
	}
	line := fields[0]
	if len(line) < 5 || line[3] != ' ' || hasCRLF(line) {
		return 0, nil, fmt.Errorf("hostabi: response_start: bad status %q", line)
	}
	status, err = strconv.Atoi(string(line[:3]))
	if err != nil || status < 100 {
		return 0, nil, fmt.Errorf("hostabi: response_start: bad status %q", line)
	}
	headers = make([]Header, 0, len(fields)/2)
	for i := 1; i < len(fields); i += 2 {
		name, value := fields[i], fields[i+1]
		if !validToken(name) || hasCRLF(value) {
			return 0, nil, fmt.Errorf("hostabi: response_start: bad header %q", name)
		}
		if hopByHop[strings.ToLower(string(name))] {
			return 0, nil, fmt.Errorf("hostabi: response_start: hop-by-hop header %q", name)
		}
		headers = append(headers, Header{Name: string(name), Value: string(value)})
	}
	return status, headers, nil
}

func hasCRLF(b []byte) bool { return bytes.ContainsAny(b, "\r\n") }

// validToken reports whether b is an RFC 9110 token (a header name).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
