package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/web"
)

var binary string

func TestMain(m *testing.M) {
	// Child mode: the graceful-shutdown test re-runs this test binary as a
	// server with a slow route and sends it SIGTERM.
	switch os.Getenv("LOCKSMITH_TEST_CHILD") {
	case "serve-slow":
		os.Exit(childServeSlow())
	case "serve":
		os.Exit(childServe())
	}
	dir, err := os.MkdirTemp("", "locksmith-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "locksmith")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		panic("build locksmith: " + err.Error() + "\n" + string(out))
	}
	code := sqltest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func childServeSlow() int {
	ctx, stop := signalContext()
	defer stop()
	hooks := &testHooks{
		routes: func(s *web.Server) {
			s.Handle("GET /slow", func(w http.ResponseWriter, r *http.Request) error {
				time.Sleep(1500 * time.Millisecond)
				_, err := io.WriteString(w, "finished")
				return err
			})
		},
		ready: func(addr string) { os.Stdout.WriteString("READY " + addr + "\n") },
	}
	return run(ctx, []string{"serve"}, os.Getenv, os.Stdout, os.Stderr, hooks)
}

func goodEnv(t *testing.T) map[string]string {
	key, err := testMasterKey()
	require.NoError(t, err)
	return map[string]string{
		"DATABASE_URL":         sqltest.OwnerURL(t),
		"LOCKSMITH_BASE_URL":   "http://localhost:8080",
		"LOCKSMITH_MASTER_KEY": key,
		"LOCKSMITH_ADDR":       "127.0.0.1:0",
	}
}

func envList(m map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestBadConfiguration runs the binary with each variable set wrong: exit
// code 2 and exactly one line naming the variable, never its value.
func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	const smtpOK = "smtp://mailer:" + smtpSecret + "@mail.example.com:587"
	tests := []struct {
		name, variable, value, wantMsg string
		// also sets other variables for the case.
		also map[string]string
	}{
		{"database missing", "DATABASE_URL", "", "DATABASE_URL: expected a PostgreSQL URL", nil},
		{"database not a url", "DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL: expected a PostgreSQL URL starting with postgres://", nil},
		{"database does not parse", "DATABASE_URL", "postgres://user@host:notaport/db", "DATABASE_URL: expected a valid PostgreSQL URL", nil},
		{"app database bad", "LOCKSMITH_APP_DATABASE_URL", "nope", "LOCKSMITH_APP_DATABASE_URL: expected a PostgreSQL URL", nil},
		{"addr bad", "LOCKSMITH_ADDR", "8080", "LOCKSMITH_ADDR: expected host:port", nil},
		{"addr port out of range", "LOCKSMITH_ADDR", ":99999", "LOCKSMITH_ADDR: expected host:port", nil},
		{"base url missing", "LOCKSMITH_BASE_URL", "", "LOCKSMITH_BASE_URL: expected the public URL", nil},
		{"base url relative", "LOCKSMITH_BASE_URL", "locksmith.internal", "LOCKSMITH_BASE_URL: expected the public URL", nil},
		{"base url http public", "LOCKSMITH_BASE_URL", "http://locksmith.example.com", "LOCKSMITH_BASE_URL: http is only allowed for localhost", nil},
		{"base url with path", "LOCKSMITH_BASE_URL", "https://locksmith.example.com/app?x=1", "LOCKSMITH_BASE_URL: expected the public URL", nil},
		{"master key missing", "LOCKSMITH_MASTER_KEY", "", "LOCKSMITH_MASTER_KEY: expected one or more keyid:base64-32-bytes", nil},
		{"master key short", "LOCKSMITH_MASTER_KEY", "k1:c2VjcmV0LXZhbHVl", "LOCKSMITH_MASTER_KEY: entry 1 (key id \"k1\"): key must decode to 32 bytes, got 12", nil},
		{"allow private bad", "LOCKSMITH_ALLOW_PRIVATE_TARGETS", "maybe", "LOCKSMITH_ALLOW_PRIVATE_TARGETS: expected true or false", nil},
		{"log level bad", "LOG_LEVEL", "loud", "LOG_LEVEL: expected one of debug, info, warn, error", nil},
		{"log format bad", "LOG_FORMAT", "xml", "LOG_FORMAT: expected text or json", nil},
		{"smtp url scheme", "LOCKSMITH_SMTP_URL", "http://mailer:" + smtpSecret + "@mail.example.com", "LOCKSMITH_SMTP_URL: the scheme must be smtp (STARTTLS), smtps (implicit TLS) or smtp+insecure", nil},
		{"smtp url unencoded password", "LOCKSMITH_SMTP_URL", "smtp://mailer:" + smtpSecret + "/x@mail.example.com", "LOCKSMITH_SMTP_URL: it does not parse as a URL; percent-encode", nil},
		{"smtp url insecure remote", "LOCKSMITH_SMTP_URL", "smtp+insecure://mailer:" + smtpSecret + "@mail.example.com", "LOCKSMITH_SMTP_URL: smtp+insecure:// sends in clear text and is only allowed for a loopback host", nil},
		{"smtp url user without password", "LOCKSMITH_SMTP_URL", "smtp://mailer@mail.example.com", "LOCKSMITH_SMTP_URL: it has a user name but no password", nil},
		{"mail from missing", "LOCKSMITH_SMTP_URL", smtpOK, "LOCKSMITH_MAIL_FROM: required when LOCKSMITH_SMTP_URL is set", nil},
		{"mail from bad", "LOCKSMITH_MAIL_FROM", "Locksmith no-reply", "LOCKSMITH_MAIL_FROM: expected a sender address", map[string]string{"LOCKSMITH_SMTP_URL": smtpOK}},
		{"mail from without smtp url", "LOCKSMITH_MAIL_FROM", "no-reply@example.com", "LOCKSMITH_SMTP_URL: not set, but LOCKSMITH_MAIL_FROM is", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := goodEnv(t)
			for k, v := range tt.also {
				env[k] = v
			}
			if tt.value == "" {
				delete(env, tt.variable)
			} else {
				env[tt.variable] = tt.value
			}
			cmd := exec.Command(binary, "serve")
			cmd.Env = envList(env)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr, "stderr: %s", stderr.String())
			require.Equal(t, 2, exitErr.ExitCode(), "stderr: %s", stderr.String())
			out := strings.TrimRight(stderr.String(), "\n")
			require.NotContains(t, out, "\n", "want one line, got: %s", out)
			require.Contains(t, out, "locksmith: "+tt.wantMsg)
			if tt.value != "" && len(tt.value) > 6 {
				require.NotContains(t, out, tt.value, "the message must not echo the value")
			}
			require.NotContains(t, out, smtpSecret, "never the SMTP password")
		})
	}
}

// TestWorkerNeedsBaseURL: a worker process builds the links it sends
// (approval webhooks, password-reset email) from LOCKSMITH_BASE_URL, so it
// refuses to start without it, like serve.
func TestWorkerNeedsBaseURL(t *testing.T) {
	t.Parallel()
	env := goodEnv(t)
	delete(env, "LOCKSMITH_BASE_URL")
	cmd := exec.Command(binary, "worker")
	cmd.Env = envList(env)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "stderr: %s", stderr.String())
	require.Equal(t, 2, exitErr.ExitCode(), "stderr: %s", stderr.String())
	require.Contains(t, stderr.String(), "locksmith: LOCKSMITH_BASE_URL: expected the public URL")
}

// smtpSecret is the SMTP password in configuration tests; no output may
// show it.
const smtpSecret = "smtp-pa55word-never-shown"

func TestUnknownCommandAndFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"frobnicate"}, {"serve", "--bogus"}, {}} {
		cmd := exec.Command(binary, args...)
		cmd.Env = envList(goodEnv(t))
		err := cmd.Run()
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr)
		require.Equal(t, 2, exitErr.ExitCode(), "args %v", args)
	}
}

// TestSchemaBehind: serve refuses an unmigrated database and says what to run.
func TestSchemaBehind(t *testing.T) {
	t.Parallel()
	env := goodEnv(t)
	empty := emptyDatabase(t)
	env["DATABASE_URL"] = empty
	cmd := exec.Command(binary, "serve")
	cmd.Env = envList(env)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "run `locksmith migrate`")

	// migrate, then serve's readiness check passes (exercised by the
	// shutdown test); migrate again is a no-op.
	for range 2 {
		cmd = exec.Command(binary, "migrate")
		cmd.Env = envList(env)
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
}

func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	name := "locksmith_cmd_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	admin, err := pgx.Connect(ctx, sqltest.ServerURL())
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close(ctx)
	})
	u, err := sqltest.WithDatabase(sqltest.ServerURL(), name)
	require.NoError(t, err)
	return u
}

// TestSIGTERMFinishesInFlightRequest starts a real process, begins a slow
// request, sends SIGTERM: the request completes and the process exits 0.
func TestSIGTERMFinishesInFlightRequest(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	require.NoError(t, err)
	env := goodEnv(t)
	env["LOCKSMITH_TEST_CHILD"] = "serve-slow"
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = envList(env)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	addr := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			addr = a
			break
		}
	}
	require.NotEmpty(t, addr, "server did not start: %s", stderr.String())
	go io.Copy(io.Discard, stdout)

	// Health endpoints answer.
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
	}

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{string(b), err}
	}()
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, "finished", r.body)
	err = cmd.Wait()
	require.NoError(t, err, "process should exit 0 after SIGTERM; stderr:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "shutting down")
}

func TestTenantCreate(t *testing.T) {
	t.Parallel()
	env := goodEnv(t)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binary, append([]string{"tenant", "create"}, args...)...)
		cmd.Env = envList(env)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	out, errOut, code := run("--slug", "bootstrap-co", "--name", "Bootstrap Co", "--owner-email", "owner@bootstrap.example")
	require.Equal(t, 0, code, errOut)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.NotEmpty(t, got["tenant_id"])
	require.True(t, strings.HasPrefix(got["api_key"], "lsk_"), got["api_key"])
	require.Contains(t, got["set_password_url"], "/set-password?token=")
	require.Equal(t, "http://localhost:8080/t/bootstrap-co/mcp", got["mcp_url"])

	_, errOut, code = run("--slug", "bootstrap-co", "--name", "Again", "--owner-email", "owner@bootstrap.example")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--slug: that slug is taken")

	_, errOut, code = run("--slug", "API", "--name", "x", "--owner-email", "owner@bootstrap.example")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--slug:")

	_, errOut, code = run("--slug", "fine-slug", "--name", "x", "--owner-email", "not-an-email")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--owner-email: enter an email address")

	_, errOut, code = run("--slug", "fine-slug")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "is required")
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
