// Package jobs holds Locksmith's River workers and periodic jobs. Each worker
// is a thin adapter over domain code (tenants, consent): it decodes its
// arguments, calls one domain function and maps the outcome to River's retry
// semantics. NewClient wires the workers, queues and periodic schedules.
package jobs
