package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/locksmithhq/locksmith/tenants/mail"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Config is Locksmith's configuration, read from the environment. Every
// variable is documented in the README's configuration table.
type Config struct {
	DatabaseURL    string
	AppDatabaseURL string
	Addr           string
	BaseURL        *url.URL
	MasterKeys     *seal.MasterKeys
	AllowPrivate   bool
	ClientIPHeader string
	LogLevel       slog.Level
	LogFormat      string
	// SMTP is the mail server for password-reset email
	// (LOCKSMITH_SMTP_URL); nil means reset by email is off.
	SMTP *mail.Server
	// MailFrom is the sender of that email (LOCKSMITH_MAIL_FROM), set
	// whenever SMTP is.
	MailFrom string
}

// ConfigError names the variable at fault and what it expects; it never
// echoes the value (it may be a secret).
type ConfigError struct {
	Var    string
	Expect string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Expect }

// need says which variables a command requires.
type need struct {
	database bool
	baseURL  bool
	keys     bool
}

// LoadConfig reads and validates the environment through getenv.
func LoadConfig(getenv func(string) string, n need) (Config, error) {
	c := Config{Addr: ":8080", LogFormat: "text", LogLevel: slog.LevelInfo}

	if v := getenv("LOG_LEVEL"); v != "" {
		switch strings.ToLower(v) {
		case "debug":
			c.LogLevel = slog.LevelDebug
		case "info":
			c.LogLevel = slog.LevelInfo
		case "warn", "warning":
			c.LogLevel = slog.LevelWarn
		case "error":
			c.LogLevel = slog.LevelError
		default:
			return c, &ConfigError{"LOG_LEVEL", "expected one of debug, info, warn, error"}
		}
	}
	if v := getenv("LOG_FORMAT"); v != "" {
		if v != "text" && v != "json" {
			return c, &ConfigError{"LOG_FORMAT", "expected text or json"}
		}
		c.LogFormat = v
	}
	if v := getenv("LOCKSMITH_ADDR"); v != "" {
		host, port, err := net.SplitHostPort(v)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || p < 0 || p > 65535 || strings.ContainsAny(host, "/ ") {
			return c, &ConfigError{"LOCKSMITH_ADDR", "expected host:port or :port (e.g. :8080)"}
		}
		c.Addr = v
	}
	if v := getenv("LOCKSMITH_ALLOW_PRIVATE_TARGETS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, &ConfigError{"LOCKSMITH_ALLOW_PRIVATE_TARGETS", "expected true or false"}
		}
		c.AllowPrivate = b
	}
	if v := getenv("LOCKSMITH_CLIENT_IP_HEADER"); v != "" {
		if strings.ContainsAny(v, " :\t\r\n") || len(v) > 64 {
			return c, &ConfigError{"LOCKSMITH_CLIENT_IP_HEADER", "expected a header name such as Fly-Client-IP"}
		}
		c.ClientIPHeader = v
	}
	if n.database {
		var err error
		if c.DatabaseURL, err = databaseURL(getenv("DATABASE_URL"), "DATABASE_URL", true); err != nil {
			return c, err
		}
		if c.AppDatabaseURL, err = databaseURL(getenv("LOCKSMITH_APP_DATABASE_URL"), "LOCKSMITH_APP_DATABASE_URL", false); err != nil {
			return c, err
		}
	}
	if err := loadMail(&c, getenv); err != nil {
		return c, err
	}
	if n.baseURL {
		u, err := parseBaseURL(getenv("LOCKSMITH_BASE_URL"))
		if err != nil {
			return c, err
		}
		c.BaseURL = u
	}
	if n.keys {
		mk, err := seal.ParseMasterKeys(getenv("LOCKSMITH_MASTER_KEY"))
		if err != nil {
			return c, &ConfigError{"LOCKSMITH_MASTER_KEY", err.Error() + " (generate one with `locksmith keys generate`)"}
		}
		c.MasterKeys = mk
	}
	return c, nil
}

// loadMail reads LOCKSMITH_SMTP_URL and LOCKSMITH_MAIL_FROM: both or
// neither. Errors never repeat the URL (it may hold a password).
func loadMail(c *Config, getenv func(string) string) error {
	rawURL, from := getenv("LOCKSMITH_SMTP_URL"), getenv("LOCKSMITH_MAIL_FROM")
	if rawURL == "" {
		if from != "" {
			return &ConfigError{"LOCKSMITH_SMTP_URL", "not set, but LOCKSMITH_MAIL_FROM is; set both to send password-reset email (" + mail.URLForm + "), or neither"}
		}
		return nil
	}
	srv, err := mail.ParseURL(rawURL)
	if err != nil {
		return &ConfigError{"LOCKSMITH_SMTP_URL", err.Error()}
	}
	if from == "" {
		return &ConfigError{"LOCKSMITH_MAIL_FROM", "required when LOCKSMITH_SMTP_URL is set: the sender of password-reset email, e.g. Locksmith <no-reply@example.com>"}
	}
	if _, err := mail.ParseFrom(from); err != nil {
		return &ConfigError{"LOCKSMITH_MAIL_FROM", err.Error()}
	}
	c.SMTP, c.MailFrom = &srv, from
	return nil
}

func databaseURL(v, name string, required bool) (string, error) {
	if v == "" {
		if required {
			return "", &ConfigError{name, "expected a PostgreSQL URL (postgres://user@host:5432/db); it is not set"}
		}
		return "", nil
	}
	if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
		return "", &ConfigError{name, "expected a PostgreSQL URL starting with postgres:// or postgresql://"}
	}
	if _, err := pgxpool.ParseConfig(v); err != nil {
		return "", &ConfigError{name, "expected a valid PostgreSQL URL (postgres://user@host:5432/db); it does not parse"}
	}
	return v, nil
}

func parseBaseURL(v string) (*url.URL, error) {
	const expect = "expected the public URL, e.g. https://locksmith.example.com (http only on localhost)"
	if v == "" {
		return nil, &ConfigError{"LOCKSMITH_BASE_URL", expect + "; it is not set"}
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, &ConfigError{"LOCKSMITH_BASE_URL", expect + ", with no path, query or credentials"}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, &ConfigError{"LOCKSMITH_BASE_URL", "http is only allowed for localhost; use https"}
		}
	default:
		return nil, &ConfigError{"LOCKSMITH_BASE_URL", expect}
	}
	u.Path = ""
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// String prints the configuration without secrets, for the startup log.
func (c Config) String() string {
	keys := "unset"
	if c.MasterKeys != nil {
		keys = fmt.Sprintf("key ids %v", c.MasterKeys.IDs())
	}
	base := ""
	if c.BaseURL != nil {
		base = c.BaseURL.String()
	}
	smtp := "unset"
	if c.SMTP != nil {
		smtp = c.SMTP.String() // without the password
	}
	return fmt.Sprintf("addr=%s base_url=%s master_keys=%s allow_private_targets=%t smtp=%s", c.Addr, base, keys, c.AllowPrivate, smtp)
}
