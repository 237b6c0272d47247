package hostabi

import (
	"bytes"
	"errors"
	"fmt"
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

// Limits of response_start (ABI.md "response_start"). Over either, the
// response is refused and the client gets 502.
const (
	// MaxResponseHeaders is the most headers one response may carry: as
	// many as Apache's LimitRequestFields and HAProxy's tune.http.maxhdr
	// (101) allow, so no response this host passes would be cut by a
	// common proxy in front, and still several times what Django or Flask
	// send (under 15), with room for dozens of Set-Cookie.
	MaxResponseHeaders = 100
	// MaxResponseStart is the most bytes the encoding of status and
	// headers may take: 16 cookies of the 4096 bytes a browser keeps, and
	// eight times nginx's default proxy_buffer_size.
	MaxResponseStart = 64 << 10
)

// DecodeStart parses the response_start encoding
// "status NUL (name NUL value NUL)*" and checks it as ABI.md
// "response_start" says: its size and header count first, before anything
// is split or copied, then the status, each name and value, and
// Content-Length.
func DecodeStart(data []byte) (status int, headers []Header, err error) {
	if len(data) > MaxResponseStart {
		return 0, nil, fmt.Errorf("hostabi: response_start: %d bytes of status and headers, over the limit of %d", len(data), MaxResponseStart)
	}
	if len(data) == 0 || data[len(data)-1] != 0 {
		return 0, nil, errors.New("hostabi: response_start: encoding must end in NUL")
	}
	fields := bytes.Count(data, []byte{0})
	if fields%2 != 1 {
		return 0, nil, errors.New("hostabi: response_start: header name without value")
	}
	if n := fields / 2; n > MaxResponseHeaders {
		return 0, nil, fmt.Errorf("hostabi: response_start: %d headers, over the limit of %d", n, MaxResponseHeaders)
	}
	line, rest, _ := bytes.Cut(data, []byte{0})
	if status, err = decodeStatus(line); err != nil {
		return 0, nil, err
	}
	headers = make([]Header, 0, fields/2)
	contentLength := -1 // index in headers
	for len(rest) > 0 {
		var name, value []byte
		name, rest, _ = bytes.Cut(rest, []byte{0})
		value, rest, _ = bytes.Cut(rest, []byte{0})
		if !validToken(name) {
			return 0, nil, fmt.Errorf("hostabi: response_start: bad header name %s", clip(name))
		}
		if !validValue(value) {
			return 0, nil, fmt.Errorf("hostabi: response_start: control character in header %s", clip(name))
		}
		if hopByHop[strings.ToLower(string(name))] {
			return 0, nil, fmt.Errorf("hostabi: response_start: hop-by-hop header %s", clip(name))
		}
		if bytes.EqualFold(name, []byte("Content-Length")) {
			if !validLength(value) {
				return 0, nil, fmt.Errorf("hostabi: response_start: Content-Length %s is not a number", clip(value))
			}
			if contentLength >= 0 {
				if headers[contentLength].Value != string(value) {
					return 0, nil, fmt.Errorf("hostabi: response_start: conflicting Content-Length %s and %s",
						clip([]byte(headers[contentLength].Value)), clip(value))
				}
				continue // an identical repeat is folded into the first
			}
			contentLength = len(headers)
		}
		headers = append(headers, Header{Name: string(name), Value: string(value)})
	}
	return status, headers, nil
}

// decodeStatus checks a status line "NNN reason": three digits from 200 to
// 599 (1xx would let a proxy in front switch protocols or expect another
// response; RFC 9110 15 defines nothing above 599), a space, and a reason
// of visible characters, spaces and tabs.
func decodeStatus(line []byte) (int, error) {
	if len(line) < 5 || line[3] != ' ' || !validValue(line) {
		return 0, fmt.Errorf("hostabi: response_start: bad status %s", clip(line))
	}
	status := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("hostabi: response_start: bad status %s", clip(line))
		}
		status = status*10 + int(c-'0')
	}
	if status < 200 || status > 599 {
		return 0, fmt.Errorf("hostabi: response_start: status %d outside 200-599", status)
	}
	return status, nil
}

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

// validValue reports whether b holds no control character but HTAB: no
// NUL, CR or LF, nothing a client or proxy could read as the end of a
// header (RFC 9110 5.5).
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validLength reports whether b is a Content-Length: 1 to 18 ASCII digits,
// so that it fits an int64.
func validLength(b []byte) bool {
	if len(b) == 0 || len(b) > 18 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// clip quotes the start of a guest-chosen string for an error message, so
// that the message stays short whatever the guest sent.
func clip(b []byte) string {
	const max = 64
	if len(b) > max {
		return fmt.Sprintf("%q... (%d bytes)", b[:max], len(b))
	}
	return fmt.Sprintf("%q", b)
}
