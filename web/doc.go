// Package web is Locksmith's HTTP layer: the one route table, middleware
// (request ids, structured logs, panic recovery, security headers, body
// limits, metrics), the health endpoints, and — as later pieces land — the
// console and consent pages, the admin JSON API and the MCP endpoint.
//
// Handlers return errors; writeError is the one place that maps an error to a
// status and a body (HTML, JSON problem details or JSON-RPC as fits the
// route). The public message comes from the error (tenants.Error); anything
// else becomes a 500 carrying the request id, with the detail logged only.
package web
