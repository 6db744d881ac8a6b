package mcp

// FastCalls is how many tools/calls h served on the fast path.
func FastCalls(h *Handler) int64 { return h.fast.Load() }

// AppendResult and PlainID expose the fast path's encoders to tests.
var (
	AppendResult = appendResult
	PlainID      = plainID
)
