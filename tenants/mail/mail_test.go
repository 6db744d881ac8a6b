package mail_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/inbox"
	"github.com/locksmithhq/locksmith/tenants/mail"
)

// secret is the password in every test URL; no error or string may show it.
const secret = "pa55-w0rd-never-shown"

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw      string
		security mail.Security
		addr     string
		user     string
	}{
		{"smtp://mailer:" + secret + "@mail.example.com", mail.StartTLS, "mail.example.com:587", "mailer"},
		{"smtp://mail.example.com:2525", mail.StartTLS, "mail.example.com:2525", ""},
		{"SMTPS://mailer:" + secret + "@mail.example.com/", mail.ImplicitTLS, "mail.example.com:465", "mailer"},
		{"smtp+insecure://localhost", mail.Insecure, "localhost:25", ""},
		{"smtp+insecure://127.0.0.1:1025", mail.Insecure, "127.0.0.1:1025", ""},
		{"smtp+insecure://[::1]:1025", mail.Insecure, "[::1]:1025", ""},
		{"smtp://user%40example.com:p%2Fw@[2001:db8::1]", mail.StartTLS, "[2001:db8::1]:587", "user@example.com"},
	} {
		s, err := mail.ParseURL(tc.raw)
		require.NoError(t, err, tc.raw)
		require.Equal(t, tc.security, s.Security, tc.raw)
		require.Equal(t, tc.addr, s.Addr(), tc.raw)
		require.Equal(t, tc.user, s.Username, tc.raw)
	}
}

// TestParseURLErrors: each bad URL is refused with what to fix, and the
// message never repeats the password (nor the URL).
func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"mail.example.com":                                   "the scheme must be smtp",
		"http://u:" + secret + "@mail.example.com":           "the scheme must be smtp",
		"smtp://u:" + secret + "@":                           "it has no host",
		"smtp:u:" + secret + "@mail.example.com":             "it has no host",
		"smtp://u:" + secret + "@mail.example.com/relay":     "no path, query or fragment",
		"smtp://u:" + secret + "@mail.example.com?tls=1":     "no path, query or fragment",
		"smtp://u:" + secret + "@mail.example.com:0":         "the port must be a number from 1 to 65535",
		"smtp://u:" + secret + "@mail.example.com:99999":     "the port must be a number from 1 to 65535",
		"smtp://u:" + secret + "/x@mail.example.com":         "percent-encode special characters",
		"smtp://mailer@mail.example.com":                     "a user name but no password",
		"smtp://:" + secret + "@mail.example.com":            "empty user name",
		"smtp+insecure://u:" + secret + "@mail.example.com":  "only allowed for a loopback host",
		"smtp+insecure://u:" + secret + "@10.0.0.5":          "only allowed for a loopback host",
		"smtp+insecure://u:" + secret + "@localhost.example": "only allowed for a loopback host",
	} {
		_, err := mail.ParseURL(raw)
		require.Error(t, err, raw)
		require.Contains(t, err.Error(), want, raw)
		require.NotContains(t, err.Error(), secret, raw)
		require.NotContains(t, err.Error(), "mail.example.com", "the URL is not echoed: %s", raw)
	}
}

func TestServerStringHidesPassword(t *testing.T) {
	t.Parallel()
	s, err := mail.ParseURL("smtps://mailer:" + secret + "@mail.example.com")
	require.NoError(t, err)
	require.Equal(t, "smtps://mailer@mail.example.com:465", s.String())
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		require.NotContains(t, fmt.Sprintf(f, s), secret, f)
	}
}

func TestParseFrom(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"no-reply@example.com", "Locksmith <no-reply@example.com>", `"Acme, Locksmith" <a@b.example>`} {
		_, err := mail.ParseFrom(ok)
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "no-reply", "a@b.example\r\nBcc: x@y.example", "<>"} {
		_, err := mail.ParseFrom(bad)
		require.ErrorContains(t, err, "expected a sender address", bad)
	}
}

// tlsInbox is an SMTP server on 127.0.0.1 with a self-signed certificate
// for 127.0.0.1 and localhost, and the pool that trusts it.
func tlsInbox(t *testing.T, cfg inbox.Config) (*inbox.Server, *x509.CertPool) {
	t.Helper()
	tc, pool, err := inbox.SelfSigned("127.0.0.1", "localhost")
	require.NoError(t, err)
	cfg.TLS = tc
	return inbox.NewTestServer(t, cfg), pool
}

func newMailer(t *testing.T, raw string, pool *x509.CertPool) *mail.Mailer {
	t.Helper()
	s, err := mail.ParseURL(raw)
	require.NoError(t, err)
	m, err := mail.New(mail.Config{Server: s, From: "Locksmith <no-reply@locksmith.example>", HelloName: "locksmith.example", RootCAs: pool})
	require.NoError(t, err)
	return m
}

// TestSendSTARTTLSWithAuth: smtp:// upgrades with STARTTLS before it
// authenticates, and the message arrives whole.
func TestSendSTARTTLSWithAuth(t *testing.T) {
	t.Parallel()
	in, pool := tlsInbox(t, inbox.Config{Username: "mailer", Password: secret})
	m := newMailer(t, "smtp://mailer:"+secret+"@"+in.Addr(), pool)
	err := m.Send(t.Context(), mail.Message{To: "someone@example.com", Subject: "Hello there", Text: "line one\nline two\n"})
	require.NoError(t, err)
	got := in.Mails()
	require.Len(t, got, 1)
	require.True(t, got[0].TLS, "sent over TLS")
	require.Equal(t, "mailer", got[0].User, "authenticated")
	require.Equal(t, "no-reply@locksmith.example", got[0].From)
	require.Equal(t, []string{"someone@example.com"}, got[0].To)
	require.Equal(t, "Hello there", got[0].Subject)
	require.Equal(t, "line one\nline two\n", got[0].Text)
	require.Equal(t, `"Locksmith" <no-reply@locksmith.example>`, got[0].Header.Get("From"))
	require.Equal(t, "<someone@example.com>", got[0].Header.Get("To"))
	require.Equal(t, "text/plain; charset=utf-8", got[0].Header.Get("Content-Type"))
	require.Equal(t, "auto-generated", got[0].Header.Get("Auto-Submitted"))
}

// TestSendRefusesWithoutSTARTTLS: a server that does not offer STARTTLS
// gets nothing (not the credentials, not the message), even on loopback.
func TestSendRefusesWithoutSTARTTLS(t *testing.T) {
	t.Parallel()
	in := inbox.NewTestServer(t, inbox.Config{})
	for _, raw := range []string{"smtp://" + in.Addr(), "smtp://mailer:" + secret + "@" + in.Addr()} {
		err := newMailer(t, raw, nil).Send(t.Context(), mail.Message{To: "someone@example.com", Subject: "s", Text: "t"})
		require.ErrorIs(t, err, mail.ErrNoStartTLS, raw)
		require.ErrorContains(t, err, "does not offer STARTTLS")
		require.ErrorContains(t, err, in.Addr(), "names the server")
		require.NotContains(t, err.Error(), secret)
	}
	require.Empty(t, in.Mails())
}

// TestSendRefusesUntrustedCertificate: STARTTLS to a server whose
// certificate doesn't verify fails before anything is sent.
func TestSendRefusesUntrustedCertificate(t *testing.T) {
	t.Parallel()
	in, _ := tlsInbox(t, inbox.Config{})
	_, otherPool, err := inbox.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	for _, pool := range []*x509.CertPool{nil, otherPool} {
		err := newMailer(t, "smtp://"+in.Addr(), pool).Send(t.Context(), mail.Message{To: "someone@example.com", Subject: "s", Text: "t"})
		require.ErrorContains(t, err, "STARTTLS")
		require.ErrorContains(t, err, "certificate")
	}
	require.Empty(t, in.Mails())
}

func TestSendImplicitTLS(t *testing.T) {
	t.Parallel()
	tc, pool, err := inbox.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	in := inbox.NewTestServer(t, inbox.Config{TLS: tc, ImplicitTLS: true, Username: "mailer", Password: secret})
	require.NoError(t, newMailer(t, "smtps://mailer:"+secret+"@"+in.Addr(), pool).Send(t.Context(),
		mail.Message{To: "someone@example.com", Subject: "s", Text: "t\n"}))
	got := in.Mails()
	require.Len(t, got, 1)
	require.True(t, got[0].TLS)
	require.Equal(t, "mailer", got[0].User)
}

// TestSendInsecureLoopback: smtp+insecure:// sends in clear text to a
// loopback relay (what `locksmith dev` uses); other hosts are refused by
// ParseURL (TestParseURLErrors).
func TestSendInsecureLoopback(t *testing.T) {
	t.Parallel()
	in := inbox.NewTestServer(t, inbox.Config{})
	require.NoError(t, newMailer(t, "smtp+insecure://"+in.Addr(), nil).Send(t.Context(),
		mail.Message{To: "someone@example.com", Subject: "s", Text: "t\n"}))
	got := in.Mails()
	require.Len(t, got, 1)
	require.False(t, got[0].TLS)
}

// TestSendWrongPassword: the server's refusal comes back, the password
// does not.
func TestSendWrongPassword(t *testing.T) {
	t.Parallel()
	in, pool := tlsInbox(t, inbox.Config{Username: "mailer", Password: "the-right-one"})
	err := newMailer(t, "smtp://mailer:"+secret+"@"+in.Addr(), pool).Send(t.Context(),
		mail.Message{To: "someone@example.com", Subject: "s", Text: "t"})
	require.ErrorContains(t, err, "AUTH: 535")
	require.NotContains(t, err.Error(), secret)
	require.Empty(t, in.Mails())
}

// TestSendTimeout: a server that accepts the connection and never answers
// costs at most the timeout.
func TestSendTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	s, err := mail.ParseURL("smtp+insecure://" + ln.Addr().String())
	require.NoError(t, err)
	m, err := mail.New(mail.Config{Server: s, From: "no-reply@locksmith.example", Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	err = m.Send(t.Context(), mail.Message{To: "someone@example.com", Subject: "s", Text: "t"})
	require.ErrorContains(t, err, "greeting: no answer within 300ms")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)

	d, err := mail.New(mail.Config{Server: s, From: "no-reply@locksmith.example"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	require.ErrorIs(t, d.Send(ctx, mail.Message{To: "someone@example.com", Subject: "s", Text: "t"}), context.Canceled,
		"a cancelled context stops a send at once")
	require.Less(t, time.Since(start), 3*time.Second)
}

// TestMessageEncoding: a subject can't add headers, and non-ASCII text
// arrives intact (quoted-printable).
func TestMessageEncoding(t *testing.T) {
	t.Parallel()
	in := inbox.NewTestServer(t, inbox.Config{})
	m := newMailer(t, "smtp+insecure://"+in.Addr(), nil)
	text := "Grüße — the link:\nhttps://locksmith.example/set-password?token=abc_DEF-123\n" + strings.Repeat("x", 1200) + "\n"
	require.NoError(t, m.Send(t.Context(), mail.Message{To: "someone@example.com", Subject: "Hi\r\nBcc: victim@example.com", Text: text}))
	got := in.Mails()
	require.Len(t, got, 1)
	require.Empty(t, got[0].Header.Get("Bcc"), "no header injected")
	require.Equal(t, []string{"someone@example.com"}, got[0].To)
	require.Equal(t, "quoted-printable", got[0].Header.Get("Content-Transfer-Encoding"))
	require.Equal(t, text, got[0].Text)
	require.NotContains(t, string(got[0].Raw), "\nBcc:")

	require.ErrorContains(t, m.Send(t.Context(), mail.Message{To: "not an address", Subject: "s", Text: "t"}), "not an email address")
}
