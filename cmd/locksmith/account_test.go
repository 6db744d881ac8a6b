package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// TestAccountResetPassword runs `locksmith account reset-password`: for an
// existing account it prints a reset link (a stored reset_password token
// that works for 30 minutes) as JSON; an unknown account, a bad address or
// a missing flag is a clear error with its exit code.
func TestAccountResetPassword(t *testing.T) {
	t.Parallel()
	env := goodEnv(t)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binary, args...)
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
	id := uuid.NewString()[:8]
	owner := "owner-" + id + "@reset.example"
	_, errOut, code := run("tenant", "create", "--slug", "reset-"+id, "--name", "Reset Co", "--owner-email", owner)
	require.Equal(t, 0, code, errOut)

	out, errOut, code := run("account", "reset-password", "--email", strings.ToUpper(owner))
	require.Equal(t, 0, code, errOut)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, owner, got["email"])
	require.NotEmpty(t, got["account_id"])
	require.True(t, strings.HasPrefix(got["set_password_url"], "http://localhost:8080/set-password?token="), got["set_password_url"])
	expires, err := time.Parse(time.RFC3339, got["expires_at"])
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), expires, time.Minute)
	u, err := url.Parse(got["set_password_url"])
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(u.Query().Get("token")))
	conn, err := pgx.Connect(context.Background(), sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var purpose string
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT purpose FROM account_tokens WHERE token_hash = $1 AND used_at IS NULL AND account_id = $2", sum[:], got["account_id"]).Scan(&purpose))
	require.Equal(t, "reset_password", purpose, "only the token's hash is stored, with the reset purpose")

	nobody := "nobody-" + id + "@reset.example"
	out, errOut, code = run("account", "reset-password", "--email", nobody)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "locksmith account: no console account has the email "+nobody)

	_, errOut, code = run("account", "reset-password", "--email", "not-an-email")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--email: enter an email address")
	_, errOut, code = run("account", "reset-password")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--email is required")
	_, errOut, code = run("account", "delete")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "expected `account reset-password --email E`")
}
