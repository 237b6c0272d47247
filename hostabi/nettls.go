package hostabi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// TLSConfig is what the guest's net_tls_handshake asks for (ABI.md
// "net_tls_handshake"), decoded.
type TLSConfig struct {
	ServerName    string
	Verify        int  // 0 CERT_NONE, 1 CERT_OPTIONAL, 2 CERT_REQUIRED
	CheckHostname bool // verify ServerName against the certificate
	DefaultCAs    bool // trust the Dialer's RootCAs (or the host's store)
	CAs           []*x509.Certificate
	ALPN          []string
	MinVersion    uint16
	MaxVersion    uint16
}

// DecodeTLSConfig decodes net_tls_handshake's `key NUL value NUL`
// configuration. It allocates in proportion to len(b) at most.
func DecodeTLSConfig(b []byte) (TLSConfig, error) {
	var c TLSConfig
	if len(b) > MaxTLSConfig {
		return c, fmt.Errorf("configuration over %d bytes", MaxTLSConfig)
	}
	if len(b) > 0 && b[len(b)-1] != 0 {
		return c, errors.New("configuration does not end in NUL")
	}
	fields := bytes.Split(b, []byte{0})
	if len(b) > 0 {
		fields = fields[:len(fields)-1]
	}
	if len(fields)%2 != 0 {
		return c, errors.New("configuration has a key without a value")
	}
	for i := 0; i < len(fields); i += 2 {
		k, v := string(fields[i]), fields[i+1]
		switch k {
		case "server_name":
			c.ServerName = string(v)
		case "verify":
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 0 || n > 2 {
				return c, fmt.Errorf("verify %q is not 0, 1 or 2", v)
			}
			c.Verify = n
		case "check_hostname":
			c.CheckHostname = string(v) == "1"
		case "default_cas":
			c.DefaultCAs = string(v) == "1"
		case "ca_pem":
			for rest := v; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				if blk.Type != "CERTIFICATE" {
					continue
				}
				cert, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					return c, fmt.Errorf("ca_pem: %v", err)
				}
				c.CAs = append(c.CAs, cert)
			}
		case "ca_der_b64":
			der, err := base64.StdEncoding.DecodeString(string(v))
			if err != nil {
				return c, fmt.Errorf("ca_der_b64: %v", err)
			}
			certs, err := x509.ParseCertificates(der)
			if err != nil {
				return c, fmt.Errorf("ca_der_b64: %v", err)
			}
			c.CAs = append(c.CAs, certs...)
		case "alpn":
			if len(v) == 0 || len(v) > 255 {
				return c, errors.New("an ALPN protocol has 1 to 255 bytes")
			}
			c.ALPN = append(c.ALPN, string(v))
		case "min_version", "max_version":
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return c, fmt.Errorf("%s %q is not a number", k, v)
			}
			if n < 0 || n > 0xffff {
				n = 0 // MINIMUM_SUPPORTED, MAXIMUM_SUPPORTED
			}
			if k == "min_version" {
				c.MinVersion = uint16(n)
			} else {
				c.MaxVersion = uint16(n)
			}
		default:
			return c, fmt.Errorf("unknown key %q", k)
		}
	}
	return c, nil
}

// verifyError is a certificate the guest's settings reject, with
// OpenSSL's verify code and message (CPython's SSLCertVerificationError).
type verifyError struct {
	code int
	msg  string
}

func (e *verifyError) Error() string { return e.msg }

// clientConfig is the crypto/tls configuration for c. Verification is
// ours (VerifyConnection) so that CERT_REQUIRED without check_hostname, and
// OpenSSL's messages, can be had.
func (c TLSConfig) clientConfig(roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         c.ALPN,
		MinVersion:         c.MinVersion,
		MaxVersion:         c.MaxVersion,
	}
	if net.ParseIP(c.ServerName) == nil {
		cfg.ServerName = c.ServerName
	}
	pool := x509.NewCertPool()
	if c.DefaultCAs {
		if roots != nil {
			pool = roots.Clone()
		} else if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		}
	}
	for _, ca := range c.CAs {
		pool.AddCert(ca)
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if c.Verify == 0 {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return &verifyError{code: 0, msg: "peer did not return a certificate"}
		}
		opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		if c.CheckHostname {
			opts.DNSName = c.ServerName
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return opensslVerifyError(err, cs.PeerCertificates)
		}
		return nil
	}
	return cfg
}

// opensslVerifyError says err as OpenSSL would (code and text of
// X509_verify_cert_error_string), for messages that match CPython's.
func opensslVerifyError(err error, chain []*x509.Certificate) *verifyError {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &host):
		if ip := net.ParseIP(host.Host); ip != nil {
			return &verifyError{64, fmt.Sprintf("IP address mismatch, certificate is not valid for '%s'.", host.Host)}
		}
		return &verifyError{62, fmt.Sprintf("Hostname mismatch, certificate is not valid for '%s'.", host.Host)}
	case errors.As(err, &unknown):
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil {
			if len(chain) == 1 {
				return &verifyError{18, "self-signed certificate"}
			}
			return &verifyError{19, "self-signed certificate in certificate chain"}
		}
		return &verifyError{20, "unable to get local issuer certificate"}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return &verifyError{10, "certificate has expired"}
	}
	return &verifyError{1, err.Error()}
}

// tlsState is a connection's TLS client once its handshake succeeded.
type tlsState struct {
	conn     *tls.Conn
	verified bool
}

// prefixConn reads prefix first: bytes read ahead before the handshake
// (by net_poll or a peek) belong to the TLS stream (STARTTLS).
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// netTLSHandshake: ABI.md "net_tls_handshake".
func netTLSHandshake(ctx context.Context, m api.Module, stack []uint64) {
	t := connsOf(ctx)
	h, ptr, n, timeoutMs := int32(stack[0]), uint32(stack[1]), uint32(stack[2]), int32(stack[3])
	c := t.get(h)
	if c == nil {
		stack[0] = t.fail(errnoBadf, "tls: not an open connection")
		return
	}
	if c.tls != nil {
		stack[0] = t.fail(errnoInval, "tls: the connection already speaks TLS")
		return
	}
	if n > MaxTLSConfig {
		stack[0] = t.fail(errnoInval, fmt.Sprintf("tls: configuration over %d bytes", MaxTLSConfig))
		return
	}
	b, ok := guestBytes(m, ptr, n)
	if !ok {
		stack[0] = t.fail(errnoFault, "tls: configuration outside linear memory")
		return
	}
	cfg, err := DecodeTLSConfig(b)
	if err != nil {
		stack[0] = t.fail(errnoInval, "tls: "+err.Error())
		return
	}
	under := c.raw
	if c.buffered() > 0 {
		under = &prefixConn{Conn: c.raw, prefix: append([]byte(nil), c.buf[c.off:]...)}
		c.buf, c.off = c.buf[:0], 0
	}
	tc := tls.Client(under, cfg.clientConfig(t.dialer.RootCAs()))
	blocking(ctx, FuncNetTLS, c.raw, func() {
		hctx, cancel := context.WithCancel(ctx)
		if d := deadline(ctx, timeoutMs); !d.IsZero() {
			hctx, cancel = context.WithDeadline(ctx, d)
		}
		err = tc.HandshakeContext(hctx)
		cancel()
	})
	var verr *verifyError
	var op *net.OpError
	switch {
	case err == nil:
		c.c, c.tls = tc, &tlsState{conn: tc, verified: cfg.Verify != 0}
		stack[0] = 0
	case errors.As(err, &verr):
		stack[0] = uint64(TLSVerifyFailed)
		t.setError(strconv.Itoa(verr.code) + " " + verr.msg)
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		stack[0] = t.fail(errnoTimedOut, "_ssl.c:990: The handshake operation timed out")
	case errors.As(err, &op):
		stack[0] = t.fail(errnoOf(err), "tls: "+err.Error())
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		stack[0] = uint64(TLSFailed)
		t.setError("EOF occurred in violation of protocol")
	default:
		stack[0] = uint64(TLSFailed)
		t.setError(err.Error())
	}
}

func (s *tlsState) info(what int32) []byte {
	cs := s.conn.ConnectionState()
	switch what {
	case InfoTLSVersion:
		return []byte(tlsVersionName(cs.Version))
	case InfoTLSCipher:
		name := tls.CipherSuiteName(cs.CipherSuite)
		bits := 128
		if strings.Contains(name, "AES_256") || strings.Contains(name, "CHACHA20") {
			bits = 256
		}
		return []byte(name + "\x00" + tlsVersionName(cs.Version) + "\x00" + strconv.Itoa(bits))
	case InfoALPN:
		return []byte(cs.NegotiatedProtocol)
	case InfoPeerCert:
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return cs.PeerCertificates[0].Raw
	case InfoPeerCertJSON:
		if len(cs.PeerCertificates) == 0 || !s.verified {
			return []byte("{}")
		}
		return certJSON(cs.PeerCertificates[0])
	}
	return nil
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "unknown"
}

// attrNames are OpenSSL's long names of the attributes of a certificate's
// names, as CPython's getpeercert() shows them.
var attrNames = map[string]string{
	"2.5.4.3": "commonName", "2.5.4.4": "surname", "2.5.4.5": "serialNumber",
	"2.5.4.6": "countryName", "2.5.4.7": "localityName", "2.5.4.8": "stateOrProvinceName",
	"2.5.4.9": "streetAddress", "2.5.4.10": "organizationName", "2.5.4.11": "organizationalUnitName",
	"2.5.4.12": "title", "2.5.4.15": "businessCategory", "2.5.4.17": "postalCode",
	"2.5.4.42": "givenName", "1.2.840.113549.1.9.1": "emailAddress",
	"0.9.2342.19200300.100.1.25": "domainComponent", "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
}

func rdnJSON(raw []byte) [][][2]string {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &seq); err != nil {
		return nil
	}
	out := [][][2]string{}
	for _, set := range seq {
		var rdn [][2]string
		for _, a := range set {
			name := attrNames[a.Type.String()]
			if name == "" {
				name = a.Type.String()
			}
			rdn = append(rdn, [2]string{name, fmt.Sprint(a.Value)})
		}
		out = append(out, rdn)
	}
	return out
}

// certJSON is the certificate as CPython's getpeercert() dict, in JSON
// (lists where Python has tuples; the guest turns them back).
func certJSON(cert *x509.Certificate) []byte {
	const layout = "Jan _2 15:04:05 2006 GMT"
	d := map[string]any{
		"subject":      rdnJSON(cert.RawSubject),
		"issuer":       rdnJSON(cert.RawIssuer),
		"version":      cert.Version,
		"serialNumber": strings.ToUpper(fmt.Sprintf("%02x", cert.SerialNumber)),
		"notBefore":    cert.NotBefore.UTC().Format(layout),
		"notAfter":     cert.NotAfter.UTC().Format(layout),
	}
	var san [][2]string
	for _, n := range cert.DNSNames {
		san = append(san, [2]string{"DNS", n})
	}
	for _, ip := range cert.IPAddresses {
		s := ip.String()
		if ip.To4() == nil {
			s = ipv6Long(ip)
		}
		san = append(san, [2]string{"IP Address", s})
	}
	for _, e := range cert.EmailAddresses {
		san = append(san, [2]string{"email", e})
	}
	for _, u := range cert.URIs {
		san = append(san, [2]string{"URI", u.String()})
	}
	if san != nil {
		d["subjectAltName"] = san
	}
	if cert.OCSPServer != nil {
		d["OCSP"] = cert.OCSPServer
	}
	if cert.IssuingCertificateURL != nil {
		d["caIssuers"] = cert.IssuingCertificateURL
	}
	if cert.CRLDistributionPoints != nil {
		d["crlDistributionPoints"] = cert.CRLDistributionPoints
	}
	b, _ := json.Marshal(d)
	return b
}

// ipv6Long is an IPv6 address as OpenSSL prints it in a certificate: eight
// groups in upper-case hexadecimal, none elided.
func ipv6Long(ip net.IP) string {
	var parts []string
	for i := 0; i < 16; i += 2 {
		parts = append(parts, fmt.Sprintf("%X", uint16(ip[i])<<8|uint16(ip[i+1])))
	}
	return strings.Join(parts, ":")
}
