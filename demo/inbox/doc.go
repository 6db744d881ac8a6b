// Package inbox is a real SMTP server that keeps every message it accepts in
// memory: the mail catcher of `locksmith dev` (each message is printed to
// the dev console) and the mail server of tests that send email. It is built
// on github.com/emersion/go-smtp. Nothing here is for production.
//
// What belongs here: the server, its in-memory store, decoding of the plain
// text messages Locksmith sends, and test helpers (a self-signed
// certificate, waiting for messages). What does not: anything of Locksmith
// itself; Locksmith's mailer must treat this server like any other.
//
// # Options
//
// With Config.TLS set the server offers STARTTLS (or, with ImplicitTLS,
// speaks TLS from the first byte); without it, it offers no TLS at all,
// which is how tests check that the mailer refuses to send in clear text.
// With Config.Username set it requires AUTH PLAIN (over TLS only) before
// MAIL FROM. Each accepted Mail records whether it came over TLS and who
// authenticated.
package inbox
