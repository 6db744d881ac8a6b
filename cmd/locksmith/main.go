// Command locksmith is Locksmith's one binary: the web server (console,
// consent pages, admin API, every tenant's MCP endpoint), the River workers,
// migrations and the local development stack.
//
//	locksmith serve [--no-worker]   serve HTTP (and run workers unless --no-worker)
//	locksmith worker                run River workers only
//	locksmith migrate               apply database migrations (idempotent)
//	locksmith dev                   a local stack with a demo tenant
//	locksmith tenant create         create a tenant and its owner
//	locksmith account reset-password  print a one-time password-reset link
//	locksmith keys generate         print a new LOCKSMITH_MASTER_KEY entry
//	locksmith version               print the version
//
// Configuration comes from the environment (see the README). A bad or
// missing variable stops the process with exit code 2 and one line naming it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	stop()
	os.Exit(code)
}

const usage = `usage: locksmith <command> [flags]

commands:
  serve [--no-worker]   serve HTTP; also runs River workers unless --no-worker
  worker                run River workers only
  migrate               apply database migrations (idempotent, safe to run concurrently)
  dev                   run a local stack with a demo tenant (what make dev runs)
  tenant create --slug S --name N --owner-email E
                        create a tenant and its owner; prints JSON with an API key and a set-password link
  account reset-password --email E
                        make a one-time password-reset link (30 minutes) for a console account; prints JSON
                        with set_password_url; using it signs the account out everywhere
  keys generate [--id ID]  print a new LOCKSMITH_MASTER_KEY entry
  version               print the version
`

// exit codes
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// run is main without the process: it returns the exit code. hooks lets
// in-package tests add routes to the server.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, hooks *testHooks) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	cmd, rest := args[0], args[1:]
	fail := func(err error) int {
		var ce *ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "locksmith: %s\n", ce.Error())
			return exitConfig
		}
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "locksmith %s: %s\n", cmd, ue.msg)
			return exitConfig
		}
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "locksmith %s: %v\n", cmd, err)
		return exitFail
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, getenv, stderr, hooks, false)
	case "worker":
		err = cmdServe(ctx, rest, getenv, stderr, hooks, true)
	case "migrate":
		err = cmdMigrate(ctx, rest, getenv, stderr)
	case "dev":
		err = cmdDev(ctx, rest, getenv, stdout, stderr)
	case "tenant":
		err = cmdTenant(ctx, rest, getenv, stdout, stderr)
	case "account":
		err = cmdAccount(ctx, rest, getenv, stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, rest, getenv, stdout, stderr)
	case "keys":
		err = cmdKeys(rest, stdout)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "locksmith %s\n", Version)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "locksmith: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	if err != nil {
		return fail(err)
	}
	return exitOK
}

// usageError is a bad flag or argument: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// newLogger builds the process logger. Secrets never reach it: config is
// logged through Config.String, and domain code logs ids, not tokens.
func newLogger(w io.Writer, c Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
