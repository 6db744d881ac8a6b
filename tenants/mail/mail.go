package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/smtp"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds one Send: connecting, TLS, the SMTP dialogue and the
// message itself.
const DefaultTimeout = 10 * time.Second

// URLForm is what LOCKSMITH_SMTP_URL looks like, for error messages.
const URLForm = "smtp://user:password@host:587 (STARTTLS), smtps://user:password@host:465 (implicit TLS) or smtp+insecure://localhost:25 (no TLS, loopback only)"

// Security is how the connection to the SMTP server is protected.
type Security int

const (
	// StartTLS connects in clear text and upgrades with STARTTLS before
	// anything else is sent; a server that does not offer it is refused
	// (smtp://).
	StartTLS Security = iota
	// ImplicitTLS speaks TLS from the first byte (smtps://).
	ImplicitTLS
	// Insecure sends in clear text; ParseURL allows it only for a loopback
	// host (smtp+insecure://).
	Insecure
)

func (s Security) scheme() string {
	switch s {
	case ImplicitTLS:
		return "smtps"
	case Insecure:
		return "smtp+insecure"
	}
	return "smtp"
}

// Server is a parsed SMTP server URL. Its password is unexported and never
// printed: String and GoString leave it out.
type Server struct {
	Security Security
	// Host is the host name or IP address (without brackets); it is also
	// the name the server's certificate must carry.
	Host string
	// Port defaults to 587 (smtp), 465 (smtps) or 25 (smtp+insecure).
	Port     string
	Username string
	password string
}

// Addr is host:port.
func (s Server) Addr() string { return net.JoinHostPort(s.Host, s.Port) }

// String is the URL without the password, safe to log.
func (s Server) String() string {
	user := ""
	if s.Username != "" {
		user = url.User(s.Username).String() + "@"
	}
	return s.Security.scheme() + "://" + user + s.Addr()
}

// GoString is String, so %#v does not print the password either.
func (s Server) GoString() string { return s.String() }

// ParseURL parses and checks an SMTP server URL (see the package doc for the
// three forms). Its errors say what is wrong without repeating the URL, so
// they never carry the password.
func ParseURL(raw string) (Server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// err quotes the URL, password included: it is not wrapped.
		return Server{}, errors.New("it does not parse as a URL; percent-encode special characters in the user name and password (/ as %2F, ? as %3F, # as %23)")
	}
	var s Server
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		s.Security, s.Port = StartTLS, "587"
	case "smtps":
		s.Security, s.Port = ImplicitTLS, "465"
	case "smtp+insecure":
		s.Security, s.Port = Insecure, "25"
	default:
		return Server{}, errors.New("the scheme must be smtp (STARTTLS), smtps (implicit TLS) or smtp+insecure (no TLS, loopback only)")
	}
	s.Host = u.Hostname()
	if u.Opaque != "" || s.Host == "" || strings.ContainsAny(s.Host, " \t\r\n") {
		return Server{}, errors.New("it has no host; expected " + URLForm)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Server{}, errors.New("it must have no path, query or fragment; expected " + URLForm)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Server{}, errors.New("the port must be a number from 1 to 65535")
		}
		s.Port = p
	}
	if u.User != nil {
		s.Username = u.User.Username()
		pw, ok := u.User.Password()
		if s.Username == "" {
			return Server{}, errors.New("it has credentials with an empty user name; expected smtp://user:password@host")
		}
		if !ok || pw == "" {
			return Server{}, errors.New("it has a user name but no password; expected smtp://user:password@host")
		}
		s.password = pw
	}
	if s.Security == Insecure && !IsLoopback(s.Host) {
		return Server{}, errors.New("smtp+insecure:// sends in clear text and is only allowed for a loopback host (localhost, 127.0.0.1, ::1); use smtp:// (STARTTLS) or smtps:// (implicit TLS)")
	}
	return s, nil
}

// IsLoopback reports whether host is "localhost" or a loopback IP address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseFrom checks a sender address ("Locksmith <no-reply@example.com>" or
// "no-reply@example.com"). Its error does not repeat the value.
func ParseFrom(raw string) (*netmail.Address, error) {
	a, err := netmail.ParseAddress(raw)
	if err != nil || !strings.Contains(a.Address, "@") {
		return nil, errors.New("expected a sender address such as no-reply@example.com or Locksmith <no-reply@example.com>")
	}
	return a, nil
}

// Config holds a Mailer's settings.
type Config struct {
	// Server is the SMTP server (LOCKSMITH_SMTP_URL, through ParseURL). Required.
	Server Server
	// From is the sender (LOCKSMITH_MAIL_FROM, checked by ParseFrom). Required.
	From string
	// HelloName is the host name (or IP address) sent in EHLO; "" means
	// "localhost".
	HelloName string
	// Timeout bounds one Send; 0 means DefaultTimeout.
	Timeout time.Duration
	// RootCAs verifies the server's certificate; nil means the system's roots.
	RootCAs *x509.CertPool
}

// Mailer sends plain-text email through one SMTP server, one connection per
// message. It is safe for concurrent use.
type Mailer struct {
	server  Server
	from    *netmail.Address
	hello   string
	timeout time.Duration
	rootCAs *x509.CertPool
}

// New checks cfg and returns a Mailer. Nothing is dialled until Send.
func New(cfg Config) (*Mailer, error) {
	if cfg.Server.Host == "" {
		return nil, errors.New("mail: server is required")
	}
	from, err := ParseFrom(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("mail: from: %w", err)
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if strings.ContainsAny(cfg.HelloName, " \t\r\n[]") {
		return nil, errors.New("mail: hello name must be a host name or IP address")
	}
	if ip := net.ParseIP(cfg.HelloName); ip != nil {
		// An address goes in EHLO as an address literal (RFC 5321 4.1.3).
		if ip.To4() != nil {
			cfg.HelloName = "[" + ip.String() + "]"
		} else {
			cfg.HelloName = "[IPv6:" + ip.String() + "]"
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Mailer{server: cfg.Server, from: from, hello: cfg.HelloName, timeout: cfg.Timeout, rootCAs: cfg.RootCAs}, nil
}

// Server returns the server the Mailer sends through.
func (m *Mailer) Server() Server { return m.server }

// Message is one plain-text email to one recipient.
type Message struct {
	// To is the recipient's address.
	To string
	// Subject is one line; it is MIME-encoded when it is not plain ASCII.
	Subject string
	// Text is the body; lines end with "\n".
	Text string
}

// ErrNoStartTLS means an smtp:// server did not offer STARTTLS, so nothing
// was sent: Locksmith does not send mail unencrypted to a server that is
// not on the loopback.
var ErrNoStartTLS = errors.New("the server does not offer STARTTLS, and Locksmith sends no mail unencrypted (use smtps:// if the server speaks TLS on connect)")

// Send delivers msg within the Mailer's timeout (or ctx's, if sooner). Its
// errors name the server by host and port and the step that failed, never
// the password; SMTP replies are kept (errors.As *textproto.Error) so a
// caller can tell a refusal (5xx) from a transient failure.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	to, err := netmail.ParseAddress(msg.To)
	if err != nil {
		return errors.New("mail: the recipient is not an email address")
	}
	data := m.build(to, msg)
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if err := m.deliver(ctx, to.Address, data); err != nil {
		return fmt.Errorf("mail: send through %s: %w", m.server.Addr(), err)
	}
	return nil
}

// deliver runs one SMTP dialogue.
func (m *Mailer) deliver(ctx context.Context, rcpt string, data []byte) error {
	// step labels an error with the dialogue step; past the deadline it
	// says so (the raw error is then an i/o timeout).
	step := func(name string, err error) error {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return fmt.Errorf("%s: %w", name, context.Canceled)
		case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("%s: no answer within %s: %w", name, m.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.server.Addr())
	if err != nil {
		return step("connect", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelling ctx (shutdown) unblocks any read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tlsConfig := &tls.Config{ServerName: m.server.Host, RootCAs: m.rootCAs, MinVersion: tls.VersionTLS12}
	if m.server.Security == ImplicitTLS {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return step("TLS handshake", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.server.Host)
	if err != nil {
		conn.Close()
		return step("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(m.hello); err != nil {
		return step("EHLO", err)
	}
	if m.server.Security == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return ErrNoStartTLS
		}
		if err := c.StartTLS(tlsConfig); err != nil {
			return step("STARTTLS", err)
		}
	}
	if m.server.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server offers no AUTH, but the URL has a user name and password")
		}
		if err := c.Auth(smtp.PlainAuth("", m.server.Username, m.server.password, m.server.Host)); err != nil {
			return step("AUTH", err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return step("MAIL FROM", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return step("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return step("DATA", err)
	}
	if _, err := w.Write(data); err != nil {
		return step("message", err)
	}
	if err := w.Close(); err != nil {
		return step("message", err)
	}
	// The message is accepted; a failed QUIT does not unsend it.
	_ = c.Quit()
	return nil
}

// build renders the message: headers, then the body as 7bit when it is
// short-lined ASCII, else quoted-printable.
func (m *Mailer) build(to *netmail.Address, msg Message) []byte {
	text := strings.ReplaceAll(msg.Text, "\r\n", "\n")
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", m.from.String())
	h("To", to.String())
	// QEncoding encodes control characters too, so a subject can't add headers.
	h("Subject", mime.QEncoding.Encode("utf-8", msg.Subject))
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", "<"+randomID()+"@"+domainOf(m.from.Address)+">")
	h("Auto-Submitted", "auto-generated")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	if plain7bit(text) {
		h("Content-Transfer-Encoding", "7bit")
		b.WriteString("\r\n")
		b.WriteString(strings.ReplaceAll(text, "\n", "\r\n"))
		return b.Bytes()
	}
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(text))
	_ = qp.Close()
	return b.Bytes()
}

func plain7bit(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		if len(line) > 998 {
			return false
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c >= 0x80 || c == '\r' || c == 0 {
				return false
			}
		}
	}
	return true
}

func domainOf(addr string) string { return addr[strings.LastIndex(addr, "@")+1:] }

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
