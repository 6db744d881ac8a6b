package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants/mail"
)

func envFunc(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestMailConfig: the SMTP settings parse into Config and print without the
// password. (A worker, which sends the email, needs the base URL like
// serve: TestBadConfiguration.)
func TestMailConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LOCKSMITH_SMTP_URL":  "smtp://mailer:" + smtpSecret + "@mail.example.com",
		"LOCKSMITH_MAIL_FROM": "Locksmith <no-reply@example.com>",
		"LOCKSMITH_BASE_URL":  "https://locksmith.example.com",
	}
	c, err := LoadConfig(envFunc(env), need{baseURL: true})
	require.NoError(t, err)
	require.Equal(t, mail.StartTLS, c.SMTP.Security)
	require.Equal(t, "mail.example.com:587", c.SMTP.Addr())
	require.Equal(t, "Locksmith <no-reply@example.com>", c.MailFrom)
	require.Contains(t, c.String(), "smtp=smtp://mailer@mail.example.com:587")
	require.NotContains(t, c.String(), smtpSecret)

	c, err = LoadConfig(envFunc(map[string]string{}), need{})
	require.NoError(t, err)
	require.Nil(t, c.SMTP, "no SMTP: reset by email is off")
	require.Contains(t, c.String(), "smtp=unset")
}

// TestServeLogHidesSMTPPassword: the process's own startup log names the
// mail server without its password.
func TestServeLogHidesSMTPPassword(t *testing.T) {
	t.Parallel()
	env := goodEnv(t)
	env["LOCKSMITH_SMTP_URL"] = "smtp://mailer:" + smtpSecret + "@mail.example.com"
	env["LOCKSMITH_MAIL_FROM"] = "no-reply@example.com"
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start, log the configuration, and stop at once
	var stdout, stderr strings.Builder
	run(ctx, []string{"serve"}, envFunc(env), &stdout, &stderr, nil)
	require.Contains(t, stderr.String(), "smtp=smtp://mailer@mail.example.com:587")
	require.NotContains(t, stderr.String(), smtpSecret)
	require.NotContains(t, stdout.String(), smtpSecret)
}
