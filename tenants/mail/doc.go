// Package mail sends Locksmith's email (password-reset links) over SMTP.
//
// What belongs here: parsing and validating the server URL
// (LOCKSMITH_SMTP_URL) and the sender (LOCKSMITH_MAIL_FROM), and sending one
// plain-text message with a bounded time. What does not: what a message
// says (the domain package that sends it writes it) and retries (the River
// job that sends it retries).
//
// # Transport security
//
//	smtp://[user:password@]host[:587]            STARTTLS, required: a server that does not offer it is refused
//	smtps://[user:password@]host[:465]           TLS from the first byte (implicit TLS)
//	smtp+insecure://[user:password@]host[:25]    no TLS; only for a loopback host (localhost, 127.0.0.1, ::1)
//
// Certificates are verified against the system roots (Config.RootCAs in
// tests) with the URL's host as the server name; TLS 1.2 at least.
// Credentials, when the URL has them, go by AUTH PLAIN, and only over TLS
// or to a loopback host.
//
// # Secrets
//
// The password is never part of an error or of Server.String; errors name
// the server by host and port only, and never echo the URL.
package mail
