package inbox

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Config holds the server's options; the zero value is a plain SMTP server
// without TLS or authentication.
type Config struct {
	// TLS, when set, makes the server offer STARTTLS (or, with ImplicitTLS,
	// speak TLS from the first byte).
	TLS *tls.Config
	// ImplicitTLS serves TLS on connect (smtps); it needs TLS.
	ImplicitTLS bool
	// Username and Password, when Username is set, are required by AUTH
	// PLAIN before MAIL FROM; AUTH is offered over TLS only.
	Username, Password string
	// OnMail is called with each accepted message, after it is stored.
	OnMail func(Mail)
	// Logger receives connection errors; nil discards them.
	Logger *slog.Logger
}

// Mail is one accepted message.
type Mail struct {
	From string
	To   []string
	// Raw is the message as received (headers and body, CRLF line ends).
	Raw []byte
	// Subject is the decoded Subject header.
	Subject string
	// Header is the parsed header.
	Header netmail.Header
	// Text is the decoded body (quoted-printable undone), with "\n" line ends.
	Text string
	// TLS reports whether the message came over TLS (STARTTLS or implicit).
	TLS bool
	// User is who authenticated ("" for nobody).
	User string
}

// Server is a running inbox. It is safe for concurrent use.
type Server struct {
	cfg  Config
	smtp *smtp.Server
	ln   net.Listener

	mu      sync.Mutex
	mails   []Mail
	changed chan struct{}
}

// New returns a server; Start listens.
func New(cfg Config) (*Server, error) {
	if cfg.ImplicitTLS && cfg.TLS == nil {
		return nil, errors.New("inbox: implicit TLS needs a TLS config")
	}
	s := &Server{cfg: cfg, changed: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = cfg.TLS
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	if cfg.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	} else {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	s.smtp = srv
	return s, nil
}

// Start listens on addr (e.g. 127.0.0.1:0) and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("inbox: listen on %s: %w", addr, err)
	}
	if s.cfg.ImplicitTLS {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	go func() { _ = s.smtp.Serve(ln) }()
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and drops its connections.
func (s *Server) Close() error {
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Mails returns the accepted messages, oldest first.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// To matches mail addressed to addr.
func To(addr string) func(Mail) bool {
	return func(m Mail) bool {
		for _, t := range m.To {
			if strings.EqualFold(t, addr) {
				return true
			}
		}
		return false
	}
}

// Await waits until n accepted messages match and returns them, oldest
// first, or fails when ctx ends.
func (s *Server) Await(ctx context.Context, n int, match func(Mail) bool) ([]Mail, error) {
	for {
		s.mu.Lock()
		var got []Mail
		for _, m := range s.mails {
			if match(m) {
				got = append(got, m)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got[:n], nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("inbox: %d of %d messages arrived: %w", len(got), n, ctx.Err())
		}
	}
}

func (s *Server) add(m Mail) {
	s.mu.Lock()
	s.mails = append(s.mails, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.cfg.OnMail != nil {
		s.cfg.OnMail(m)
	}
}

// session is one SMTP session; go-smtp starts a new one after STARTTLS.
type session struct {
	s    *Server
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.cfg.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != ss.s.cfg.Username || password != ss.s.cfg.Password {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.cfg.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Mail{From: ss.from, To: ss.to, Raw: raw, User: ss.user}
	_, m.TLS = ss.conn.TLSConnectionState()
	if msg, err := netmail.ReadMessage(bytes.NewReader(raw)); err == nil {
		m.Header = msg.Header
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			subject = msg.Header.Get("Subject")
		}
		m.Subject = subject
		var body io.Reader = msg.Body
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, _ := io.ReadAll(body)
		m.Text = strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	ss.s.add(m)
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// SelfSigned returns a server TLS config with a fresh self-signed
// certificate for hosts (names or IP addresses) and a pool that trusts it.
func SelfSigned(hosts ...string) (*tls.Config, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "inbox test server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, MinVersion: tls.VersionTLS12}, pool, nil
}

// NewTestServer starts an inbox on 127.0.0.1:0 for a test and closes it
// when the test ends.
func NewTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("inbox: new test server: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("inbox: start test server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
