package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
)

// cmdAccount implements `locksmith account reset-password --email E`: it
// makes a one-time password-reset link for an existing console account
// (what "Forgot your password?" emails) and prints it as JSON. Earlier
// unused reset links of the account stop working. Setting the password
// through the link signs the account out everywhere.
func cmdAccount(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "reset-password" {
		return &usageError{"expected `account reset-password --email E`"}
	}
	fs := newFlagSet("account reset-password", stderr)
	email := fs.String("email", "", "the console account's email (required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *email == "" {
		return &usageError{"--email is required"}
	}
	normalized, err := tenants.NormalizeEmail(*email)
	if err != nil {
		var pe *tenants.Error
		if errors.As(err, &pe) {
			return &usageError{"--email: " + pe.Message}
		}
		return err
	}
	m, ctx, done, err := openForCommand(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer done()

	acct, err := m.Tenants.AccountByEmail(ctx, normalized)
	if errors.Is(err, tenants.ErrNotFound) {
		return fmt.Errorf("no console account has the email %s; check the address, or create the account with `locksmith tenant create --owner-email %s` or by signing up", normalized, normalized)
	}
	if err != nil {
		return err
	}
	_, tok, expires, err := m.Tenants.MintPasswordReset(ctx, acct.ID)
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{
		"account_id":       acct.ID,
		"email":            acct.Email,
		"set_password_url": m.Tenants.SetPasswordURL(tok),
		"expires_at":       expires.UTC().Format(time.RFC3339),
	})
}
